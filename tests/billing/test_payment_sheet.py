"""What a mobile app integrates: ``/pay`` answers what Stripe's PaymentSheet needs, a booking
carries its payment, payments filter by booking, and a payment's state says a refund is pending.

localstripe has no ephemeral keys: the full ``/pay`` answer is tested against the scripted
Stripe double (``stripe_doubles.ScriptedStripe``), and localstripe keeps the rest
(``test_pay_api.py``: ``/pay`` without ``stripe_version``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import stripe
import yaml
from django.db import connection
from django.test.utils import CaptureQueriesContext

from api.models import User
from audit.models import AuditEvent
from billing.gateways.stripe import StripeGateway
from billing.models import Payment, Refund, StripeCustomer
from billing.services.refunds import refund_apply_update, refund_request
from billing.states import ApiState, api_state
from scheduling.bookings.services import booking_cancel
from scheduling.models import Booking, FeeRequest
from tests.billing.conftest import booking_for, make_payment
from tests.billing.stripe_doubles import (
    PUBLISHABLE_KEY,
    Reply,
    ScriptedStripe,
    payment_intent_object,
    scripted_stripe,
    stripe_error,
)
from tests.clock import clock_instant
from tests.factories import api_client_for

NOW = clock_instant()
ROOT = Path(__file__).resolve().parents[2]
SDK_VERSION = "2020-08-27"  # what Stripe's iOS and Android SDKs send as Stripe-Version
EXPIRES = 1_900_000_000
CUSTOMER = {"id": "cus_sheet", "object": "customer", "metadata": {}}
EPHEMERAL_KEY = {
    "id": "ephkey_1",
    "object": "ephemeral_key",
    "associated_objects": [{"id": "cus_sheet", "type": "customer"}],
    "created": EXPIRES - 3600,
    "expires": EXPIRES,
    "livemode": False,
    "secret": "ek_test_sheet_secret",
}
INTENT = payment_intent_object(intent_id="pi_sheet", status="requires_payment_method")


def pay_url(booking: Booking) -> str:
    return f"/api/v1/bookings/{booking.pk}/pay"


@pytest.fixture
def held(client_user: User, therapist: User) -> Booking:
    return booking_for(client=client_user, therapist=therapist, now=NOW)


@pytest.fixture
def stripe_double(settings: Any) -> Iterator[ScriptedStripe]:
    """The app pointed at a scripted Stripe; each test sets ``replies``."""
    with scripted_stripe([Reply(500, stripe_error("api_error", ""))]) as double:
        settings.STRIPE_SECRET_KEY = "sk_test_scripted"
        settings.STRIPE_PUBLISHABLE_KEY = PUBLISHABLE_KEY
        settings.STRIPE_API_BASE = double.url
        settings.STRIPE_MAX_RETRIES = 0
        yield double


# --- the gateway ---------------------------------------------------------------------------


def test_ephemeral_key_create_sends_the_customer_and_the_sdks_stripe_version() -> None:
    with scripted_stripe([Reply(200, EPHEMERAL_KEY)]) as double:
        gateway = StripeGateway(
            api_key="sk_test_scripted", webhook_secret="whsec_x", api_base=double.url
        )
        key = gateway.ephemeral_key_create(customer_id="cus_sheet", stripe_version=SDK_VERSION)
    assert [(r.method, r.path, dict(parse_qsl(r.body))) for r in double.received] == [
        ("POST", "/v1/ephemeral_keys", {"customer": "cus_sheet"})
    ]
    assert double.received[0].stripe_version == SDK_VERSION
    assert (key.id, key.secret, key.customer_id, key.expires) == (
        "ephkey_1",
        "ek_test_sheet_secret",
        "cus_sheet",
        EXPIRES,
    )
    assert "ek_test_sheet_secret" not in repr(key)  # a credential: never in a log line


# --- POST /pay: what PaymentSheet needs ----------------------------------------------------


def test_pay_answers_everything_paymentsheet_needs(
    stripe_double: ScriptedStripe,
    held: Booking,
    client_user: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stripe_double.replies = [Reply(200, CUSTOMER), Reply(200, EPHEMERAL_KEY), Reply(200, INTENT)]
    caplog.set_level(logging.DEBUG)
    response = api_client_for(client_user, mfa=False).post(
        pay_url(held), {"stripe_version": SDK_VERSION}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    payment = Payment.objects.get(booking=held)
    assert {k: v for k, v in body.items() if k != "payment"} == {
        "client_secret": "pi_sheet_secret_test",
        "payment_intent_id": "pi_sheet",
        "customer_id": "cus_sheet",
        "ephemeral_key_secret": "ek_test_sheet_secret",
        "ephemeral_key_expires_at": datetime.fromtimestamp(EXPIRES, tz=UTC)
        .isoformat()
        .replace("+00:00", "Z"),
        "publishable_key": PUBLISHABLE_KEY,
    }
    assert (body["payment"]["id"], body["payment"]["state"]) == (
        str(payment.pk),
        "requires_payment_method",
    )
    assert [(r.path, r.stripe_version) for r in stripe_double.received] == [
        ("/v1/customers", stripe.api_version),  # the server SDK's own version
        ("/v1/ephemeral_keys", SDK_VERSION),  # the app's, which it reads the key in
        ("/v1/payment_intents", stripe.api_version),
    ]
    # Not even the SDK's DEBUG lines (request and response bodies) reach a log.
    assert "/v1/ephemeral_keys" in caplog.text  # the calls themselves are logged
    assert "ek_test_sheet_secret" not in caplog.text
    assert "pi_sheet_secret_test" not in caplog.text


@pytest.mark.parametrize(
    "version", ["", "latest", "2020-8-27", "2020-08-27.BASIL", "1999-01-01", "2020-08-27.x" * 4]
)
def test_pay_refuses_a_malformed_stripe_version_and_changes_nothing(
    stripe_double: ScriptedStripe, held: Booking, client_user: User, version: str
) -> None:
    response = api_client_for(client_user, mfa=False).post(
        pay_url(held), {"stripe_version": version}, format="json"
    )
    assert response.status_code == 400
    assert {e["field"] for e in response.json()["errors"]} == {"stripe_version"}
    assert stripe_double.received == []
    assert Payment.objects.count() == StripeCustomer.objects.count() == 0


def test_a_version_stripe_refuses_is_422_and_no_intent_is_made(
    stripe_double: ScriptedStripe, held: Booking, client_user: User
) -> None:
    refused = stripe_error("invalid_request_error", "", "Invalid Stripe API version")
    stripe_double.replies = [Reply(200, CUSTOMER), Reply(400, refused)]
    response = api_client_for(client_user, mfa=False).post(
        pay_url(held), {"stripe_version": "2001-01-01"}, format="json"
    )
    assert (response.status_code, response.json()["code"]) == (422, "stripe_version_refused")
    assert [r.path for r in stripe_double.received] == ["/v1/customers", "/v1/ephemeral_keys"]
    assert Payment.objects.count() == 0


def test_pay_without_a_publishable_key_is_503_and_starts_nothing(
    stripe_double: ScriptedStripe, settings: Any, held: Booking, client_user: User
) -> None:
    settings.STRIPE_PUBLISHABLE_KEY = ""
    response = api_client_for(client_user, mfa=False).post(pay_url(held), {}, format="json")
    assert (response.status_code, response.json()["code"]) == (503, "payments_not_configured")
    assert stripe_double.received == []
    assert Payment.objects.count() == 0


# --- a booking carries its payment -------------------------------------------------------


def test_a_booking_carries_its_session_payment_id_and_state(
    held: Booking, client_user: User, therapist: User
) -> None:
    api = api_client_for(client_user, mfa=False)
    assert api.get(f"/api/v1/bookings/{held.pk}").json()["payment"] is None
    payment = make_payment(client=client_user, therapist=therapist, now=NOW, state="canceled")
    Payment.objects.filter(pk=payment.pk).update(booking=held)
    newer = make_payment(client=client_user, therapist=therapist, now=NOW)
    Payment.objects.filter(pk=newer.pk).update(booking=held, version=2)
    fee = make_payment(client=client_user, therapist=therapist, now=NOW, purpose="no_show_fee")
    Payment.objects.filter(pk=fee.pk).update(booking=held, version=1)

    detail = api.get(f"/api/v1/bookings/{held.pk}").json()
    listed = {b["id"]: b for b in api.get("/api/v1/bookings/").json()["results"]}
    expected = {"id": str(newer.pk), "state": "requires_payment_method"}
    assert detail["payment"] == expected  # the latest session attempt, not a fee
    assert listed[str(held.pk)]["payment"] == expected


def _list_queries(user: User) -> int:
    api = api_client_for(user, mfa=False)
    with CaptureQueriesContext(connection) as queries:
        response = api.get("/api/v1/bookings/")
    assert response.status_code == 200
    assert all(b["payment"] is not None for b in response.json()["results"])
    return len(queries)


def test_listing_bookings_reads_their_payments_in_one_query(
    client_user: User, therapist: User
) -> None:
    """No query per booking: two bookings with payments cost what six do."""
    for n in range(2):
        make_payment(client=client_user, therapist=therapist, now=NOW, starts_in=timedelta(n + 2))
    two = _list_queries(client_user)
    for n in range(4):
        make_payment(client=client_user, therapist=therapist, now=NOW, starts_in=timedelta(n + 5))
    assert _list_queries(client_user) == two


# --- GET /billing/payments?booking= -------------------------------------------------------


def test_payments_filter_by_booking(client_user: User, therapist: User, outsider: User) -> None:
    first = make_payment(client=client_user, therapist=therapist, now=NOW)
    make_payment(client=client_user, therapist=therapist, now=NOW)
    theirs = make_payment(client=outsider, therapist=therapist, now=NOW)
    api = api_client_for(client_user, mfa=False)

    mine = api.get(f"/api/v1/billing/payments?booking={first.booking_id}")
    not_mine = api.get(f"/api/v1/billing/payments?booking={theirs.booking_id}")

    assert [p["id"] for p in mine.json()["results"]] == [str(first.pk)]
    assert (not_mine.status_code, not_mine.json()["results"]) == (200, [])


@pytest.mark.parametrize("value", ["nope", "123", "", "6f1c1d7e-8a43-4a8e-9d0b-2f5b2b0c9a1"])
def test_payments_filter_refuses_a_bad_booking_id(
    client_user: User, therapist: User, value: str
) -> None:
    make_payment(client=client_user, therapist=therapist, now=NOW)
    response = api_client_for(client_user, mfa=False).get(
        "/api/v1/billing/payments", {"booking": value}
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == ["booking"]
    assert not AuditEvent.objects.filter(resource_type="billing.payment", outcome="success")


# --- the payment's state: one spelling, and a pending refund shown ---------------------------


def _shown(user: User, payment: Payment) -> tuple[str, str]:
    api = api_client_for(user, mfa=False)
    listed = api.get(f"/api/v1/billing/payments?booking={payment.booking_id}").json()
    booking = api.get(f"/api/v1/bookings/{payment.booking_id}").json()
    return listed["results"][0]["state"], booking["payment"]["state"]


def test_an_in_time_cancellation_shows_refund_pending_until_stripe_confirms(
    client_user: User, therapist: User
) -> None:
    payment = make_payment(
        client=client_user, therapist=therapist, now=NOW, state="succeeded", captured_minor=12000
    )
    assert _shown(client_user, payment) == ("succeeded", "succeeded")

    booking_cancel(booking_id=payment.booking_id, by=client_user, reason="client", now=NOW)
    request = FeeRequest.objects.get(booking_id=payment.booking_id)
    assert (request.kind, request.refund_minor, request.state) == ("full_refund", 12000, "pending")
    assert Payment.objects.get(pk=payment.pk).state == "succeeded"  # until billing runs
    assert _shown(client_user, payment) == ("refund_pending", "refund_pending")

    # billing reserves the refund (our row says refunded) and sends it: Stripe says pending
    locked = Payment.objects.get(pk=payment.pk)
    refund = refund_request(
        payment=locked, amount_minor=12000, reason="client_cancelled_in_time", now=NOW
    )
    FeeRequest.objects.filter(pk=request.pk).update(state="settled", settled_at=NOW)
    assert Payment.objects.get(pk=payment.pk).state == "refunded"
    assert _shown(client_user, payment) == ("refund_pending", "refund_pending")

    refund.payment = Payment.objects.get(pk=payment.pk)
    assert refund_apply_update(refund=refund, status="succeeded", now=NOW)
    assert Refund.objects.get(pk=refund.pk).state == "succeeded"
    assert _shown(client_user, payment) == ("refunded", "refunded")


def test_a_late_fee_with_nothing_to_refund_is_not_refund_pending(
    client_user: User, therapist: User
) -> None:
    payment = make_payment(
        client=client_user, therapist=therapist, now=NOW, state="succeeded", captured_minor=12000
    )
    FeeRequest.objects.create(
        booking_id=payment.booking_id,
        kind="late_cancellation_fee",
        reason="client",
        fee_minor=12000,
        refund_minor=0,
        currency="USD",
        created_at=NOW,
    )
    assert _shown(client_user, payment) == ("succeeded", "succeeded")


def test_payments_are_cancelled_in_the_api_as_bookings_are(
    client_user: User, therapist: User
) -> None:
    payment = make_payment(client=client_user, therapist=therapist, now=NOW, state="canceled")
    assert Payment.objects.get(pk=payment.pk).state == "canceled"  # stored as Stripe says
    assert _shown(client_user, payment) == ("cancelled", "cancelled")


def test_every_stored_state_maps_to_a_documented_one() -> None:
    shown = {api_state(state) for state in Payment.State.values}
    assert shown | {"refund_pending"} == set(ApiState.values)
    assert "canceled" not in ApiState.values


def test_the_document_spells_payment_states_one_way() -> None:
    document = yaml.safe_load((ROOT / "openapi.yaml").read_text(encoding="utf-8"))
    schemas = document["components"]["schemas"]
    assert schemas["PaymentStateEnum"]["enum"] == list(ApiState.values)
    for name in ("PaymentOut", "BookingPaymentOut"):
        state = schemas[name]["properties"]["state"]
        assert state["allOf"] == [{"$ref": "#/components/schemas/PaymentStateEnum"}]
        assert "`refund_pending`: Paid, and money is owed back" in state["description"]
    pay_out = schemas["PayOut"]["properties"]
    assert set(pay_out) >= {
        "payment_intent_id",
        "customer_id",
        "ephemeral_key_secret",
        "ephemeral_key_expires_at",
        "publishable_key",
    }
    assert all(pay_out[name].get("description") for name in pay_out if name != "payment")
