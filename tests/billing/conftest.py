"""Fixtures of the billing suite.

Every test here runs with ``stripe_wire``: it records each request the Stripe SDK sends (whatever
server it goes to) and, when the test ends, checks that none carries anything but opaque ids in
metadata, and no description, statement descriptor, name, email, phone or address at all (PAY-16).
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import stripe
from django.db import connections
from django.test import TestCase
from django.test.testcases import LiveServerThread, _StaticFilesHandler
from django.utils import timezone
from rest_framework.test import APIClient

from api.models import Role, User
from billing import gateways
from billing.gateways.stripe import StripeGateway
from billing.models import Payment, PaymentMethodSetup
from billing.services.methods import payment_method_setup_start
from billing.services.payments import PaymentStart, payment_intent_ensure
from billing.states import COLLECTED
from scheduling.models import Booking, BookingStatus, TherapistProfile
from tests.billing.stripe_doubles import (
    LOCALSTRIPE_KEY,
    PUBLISHABLE_KEY,
    WEBHOOK_SECRET,
    LocalStripe,
    event,
    setup_intent_object,
    signed,
)
from tests.factories import make_user
from tests.scheduling.conftest import make_booking, make_therapist

_ALLOWED_METADATA = {"payment_ref", "booking_ref", "user_ref", "refund_ref", "setup_ref"}
_OPAQUE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_FORBIDDEN_PARAMS = re.compile(
    r"^(description|statement_descriptor.*|receipt_email|name|email|phone|address.*|shipping.*"
    r"|billing_details.*|customer_details.*)$"
)
# What the personas and the demo data would leak: their names, their emails, care words.
PHI_MARKERS = re.compile(
    r"(?i)(test (client|therapist)|@example\.test|depress|anxiety|trauma|diagnos|therapy|"
    r"counsel|psychiatr|session note|90834|90837)"
)


@dataclass(frozen=True)
class WireRequest:
    method: str
    url: str
    idempotency_key: str | None
    body: str


def opaque_violations(request: WireRequest) -> list[str]:
    """Why ``request`` could carry PHI to Stripe; empty when it cannot."""
    problems = []
    query = urlsplit(request.url).query
    for key, value in parse_qsl(request.body, keep_blank_values=True) + parse_qsl(query):
        top = key.split("[", 1)[0]
        if _FORBIDDEN_PARAMS.match(top):
            problems.append(f"{key} is sent")
        if top == "metadata":
            name = key[len("metadata[") : -1]
            if name not in _ALLOWED_METADATA:
                problems.append(f"metadata key {name!r} is not an opaque reference")
            elif not _OPAQUE.match(value):
                problems.append(f"metadata {name!r} is not an opaque id")
    if PHI_MARKERS.search(request.body) or PHI_MARKERS.search(request.url):
        problems.append("a PHI marker is in the request")
    return problems


# The personas, without a password: hashing one costs ~1 s, and billing never signs in.


@pytest.fixture(autouse=True)
def _at_fixed_clock(fixed_clock: datetime) -> datetime:
    """Every test here runs at one fixed instant (tests/clock.py), whatever the hour."""
    return fixed_clock


@pytest.fixture
def client_user(db: None) -> User:
    return make_user(role=Role.CLIENT, password=None)


@pytest.fixture
def outsider(db: None) -> User:
    return make_user(role=Role.CLIENT, password=None)


@pytest.fixture
def therapist(db: None) -> User:
    return make_user(role=Role.THERAPIST, password=None)


@pytest.fixture
def other_therapist(db: None) -> User:
    return make_user(role=Role.THERAPIST, password=None)


@pytest.fixture
def compliance_officer(db: None) -> User:
    return make_user(role=Role.COMPLIANCE_OFFICER, password=None)


@pytest.fixture
def admin_user(db: None) -> User:
    return make_user(role=Role.ADMIN, password=None, is_superuser=True)


@pytest.fixture(autouse=True)
def stripe_wire(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[WireRequest]]:
    sent: list[WireRequest] = []
    original = stripe.RequestsClient.request

    def recording(
        self: Any, method: str, url: str, headers: Any, post_data: Any = None, **kw: Any
    ) -> Any:
        headers = dict(headers or {})
        body = post_data.decode() if isinstance(post_data, bytes) else str(post_data or "")
        sent.append(WireRequest(method, url, headers.get("Idempotency-Key"), body))
        return original(self, method, url, headers, post_data, **kw)

    monkeypatch.setattr(stripe.RequestsClient, "request", recording)
    yield sent
    problems = [(r.method, r.url, p) for r in sent for p in opaque_violations(r)]
    assert problems == [], f"PAY-16: requests to Stripe could carry PHI: {problems}"


@pytest.fixture
def webhook_secret(settings: Any) -> str:
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_LIVEMODE = False
    return WEBHOOK_SECRET


@pytest.fixture
def localstripe(tmp_path: Path, settings: Any) -> Iterator[LocalStripe]:
    """A fresh localstripe per test (a late webhook of one test can never reach the next), and
    the gateway pointed at it."""
    server = LocalStripe(tmp_path)
    settings.STRIPE_SECRET_KEY = LOCALSTRIPE_KEY
    settings.STRIPE_PUBLISHABLE_KEY = PUBLISHABLE_KEY
    settings.STRIPE_API_BASE = server.url
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_LIVEMODE = False
    settings.STRIPE_MAX_RETRIES = 0
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def app_server(transactional_db: None, settings: Any) -> Iterator[str]:
    """The app served over real HTTP on loopback, for localstripe to deliver webhooks to.

    Django's own live-server thread; an in-memory SQLite test database is shared with it (as
    Django's LiveServerTestCase does), PostgreSQL is reached over the thread's own connection.
    """
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "127.0.0.1"]
    shared = {
        conn.alias: conn
        for conn in connections.all()
        if conn.vendor == "sqlite" and conn.is_in_memory_db()
    }
    for conn in shared.values():
        conn.inc_thread_sharing()
    thread = LiveServerThread("127.0.0.1", _StaticFilesHandler, connections_override=shared)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait(timeout=10)
    try:
        if thread.error:
            raise thread.error
        yield f"http://127.0.0.1:{thread.port}"
    finally:
        thread.terminate()
        for conn in shared.values():
            conn.dec_thread_sharing()


@pytest.fixture
def stripe_e2e(localstripe: LocalStripe, app_server: str) -> LocalStripe:
    """localstripe delivering signed webhooks to the app's real endpoint."""
    localstripe.register_webhook(f"{app_server}/api/v1/billing/webhooks/stripe")
    return localstripe


_booking_hours = itertools.count()


def booking_for(
    *,
    client: User,
    therapist: User,
    now: Any,
    status: str = BookingStatus.HELD,
    price_minor: int = 12000,
    currency: str = "USD",
    starts_in: timedelta = timedelta(days=2),
    **terms: Any,
) -> Booking:
    """A booking of ``client`` with ``therapist`` (by default two days ahead), with its price and
    any other copied ``terms`` set (each one an hour after the last, within 12 hours, so a
    test's bookings never overlap)."""
    profile = TherapistProfile.objects.filter(user=therapist).first() or make_therapist(
        user=therapist, now=now
    )
    booking = make_booking(
        therapist=profile,
        client=client,
        start=now + starts_in + timedelta(hours=next(_booking_hours) % 12),
        status=status,
        hold_expires_at=now + timedelta(minutes=15) if status == BookingStatus.HELD else None,
        now=now,
    )
    Booking.objects.filter(pk=booking.pk).update(
        price_minor=price_minor, currency=currency, **terms
    )
    booking.refresh_from_db()
    return booking


def start_payment(
    *,
    client: User,
    therapist: User,
    now: Any,
    amount_minor: int = 12000,
    currency: str = "USD",
    booking: Booking | None = None,
    purpose: str = "session",
) -> PaymentStart:
    booking = booking or booking_for(client=client, therapist=therapist, now=now)
    return payment_intent_ensure(
        booking_id=booking.pk,
        client_id=client.pk,
        therapist_id=therapist.pk,
        purpose=purpose,
        amount_minor=amount_minor,
        currency=currency,
        now=now,
    )


def client_sdk(localstripe: LocalStripe) -> stripe.StripeClient:
    """Stands in for Stripe.js / the mobile SDK confirming an intent (the card never reaches us)."""
    return stripe.StripeClient(
        LOCALSTRIPE_KEY,
        base_addresses={"api": localstripe.url},
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=(2, 10)),
    )


def make_payment(
    *,
    client: User,
    therapist: User,
    now: Any,
    state: str = "requires_payment_method",
    intent_id: str | None = None,
    amount_minor: int = 12000,
    captured_minor: int = 0,
    purpose: str = "session",
    starts_in: timedelta = timedelta(days=2),
) -> Payment:
    """A payment as our own rows would hold it (no Stripe call), for a booking of its own."""
    booking = booking_for(
        client=client,
        therapist=therapist,
        now=now,
        status=BookingStatus.CONFIRMED if state in COLLECTED else BookingStatus.HELD,
        price_minor=amount_minor,
        starts_in=starts_in,
    )
    return Payment.objects.create(
        booking=booking,
        purpose=purpose,
        client=client,
        therapist=therapist,
        amount_minor=amount_minor,
        currency="USD",
        amount_captured_minor=captured_minor,
        state=state,
        stripe_customer_id="cus_test",
        stripe_payment_intent_id=intent_id or f"pi_{uuid.uuid4().hex[:14]}",
        created_at=now,
        updated_at=now,
    )


def pay_at_localstripe(
    localstripe: LocalStripe, payment: Payment, method: str = "pm_card_visa"
) -> None:
    """The client confirms the intent with a card, as Stripe.js would."""
    sdk = client_sdk(localstripe)
    intent_id = str(payment.stripe_payment_intent_id)
    sdk.v1.payment_intents.update(intent_id, params={"payment_method": method})
    sdk.v1.payment_intents.confirm(intent_id)


WEBHOOK_URL = "/api/v1/billing/webhooks/stripe"


def post_webhook(body: bytes, sig: str | None, client: Any = None, **headers: str) -> Any:
    """POST ``body`` to the webhook endpoint with ``sig`` as its Stripe-Signature (if any)."""
    extra = {"HTTP_STRIPE_SIGNATURE": sig} if sig is not None else {}
    extra.update(headers)
    return (client or APIClient()).generic(
        "POST", WEBHOOK_URL, body, content_type="application/json", **extra
    )


def save_card_at_stripe(localstripe: LocalStripe, setup_intent_id: str, number: str) -> str:
    """What Stripe.js does with the SetupIntent's client secret: the card goes to Stripe."""
    sdk = client_sdk(localstripe)
    method = sdk.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": number, "exp_month": 4, "exp_year": 2031, "cvc": "123"},
        }
    )
    sdk.v1.setup_intents.confirm(setup_intent_id, params={"payment_method": method.id})
    return str(method.id)


def succeeded_event(setup: PaymentMethodSetup, method_id: str, *, event_id: str) -> dict[str, Any]:
    return event(
        "setup_intent.succeeded",
        setup_intent_object(
            setup_intent_id=str(setup.stripe_setup_intent_id),
            status="succeeded",
            customer=setup.stripe_customer_id,
            payment_method=method_id,
        ),
        event_id=event_id,
    )


def saved_card(localstripe: LocalStripe, client: User, number: str = "4242424242424242") -> str:
    """A card saved by ``client`` through a SetupIntent and its webhook; its Stripe id."""
    setup = payment_method_setup_start(client=client, request=None, now=timezone.now()).setup
    method_id = save_card_at_stripe(localstripe, str(setup.stripe_setup_intent_id), number)
    body = succeeded_event(setup, method_id, event_id=f"evt_setup_{setup.pk.hex}")
    with TestCase.captureOnCommitCallbacks(execute=True):  # the card is saved after commit
        assert post_webhook(*signed(body)).status_code == 200
    return method_id


def use_gateway(
    monkeypatch: pytest.MonkeyPatch,
    api_base: str,
    *,
    max_retries: int = 1,
    sleeps: list[float] | None = None,
) -> None:
    """Billing's gateway: Stripe at ``api_base`` (a scripted double), a short read timeout,
    ``max_retries`` retries, and each back-off recorded in ``sleeps`` instead of slept."""
    monkeypatch.setattr(
        gateways,
        "get_gateway",
        lambda: StripeGateway(
            api_key="sk_test_x",
            webhook_secret="whsec_x",
            api_base=api_base,
            read_timeout=0.3,
            max_retries=max_retries,
            sleep=(lambda seconds: None) if sleeps is None else sleeps.append,
        ),
    )
