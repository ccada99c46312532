"""``POST /api/v1/bookings/{id}/pay`` and ``GET /api/v1/billing/payments``."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from api.models import Role, User
from audit.db import EVENT_COLUMNS
from audit.models import AuditEvent
from billing.models import Payment
from scheduling.models import Booking, BookingStatus
from tests.billing.conftest import WireRequest, booking_for, make_payment
from tests.billing.stripe_doubles import PUBLISHABLE_KEY, LocalStripe
from tests.clock import clock_instant
from tests.factories import api_client_for, make_user
from tests.live import free_port

NOW = clock_instant()  # the instant the views run at (tests/clock.py)


def pay_url(booking: Booking) -> str:
    return f"/api/v1/bookings/{booking.pk}/pay"


def intent_bodies(wire: list[WireRequest]) -> list[dict[str, str]]:
    return [
        dict(parse_qsl(r.body))
        for r in wire
        if r.method == "post" and r.url.endswith("/v1/payment_intents")
    ]


@pytest.fixture
def held(client_user: User, therapist: User) -> Booking:
    return booking_for(client=client_user, therapist=therapist, now=NOW)


@pytest.mark.integration
def test_pay_01_the_price_is_the_bookings_whatever_the_client_sends(
    localstripe: LocalStripe, held: Booking, client_user: User, stripe_wire: list[WireRequest]
) -> None:
    """PAY-01: the amount and currency are the booking's; what the client sends is ignored."""
    response = api_client_for(client_user, mfa=False).post(
        pay_url(held), {"amount": 1, "currency": "EUR"}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["payment"]["amount_minor"] == 12000
    assert body["payment"]["currency"] == "USD"
    assert body["payment"]["state"] == "requires_payment_method"
    assert body["client_secret"].startswith("pi_")
    assert [(b["amount"], b["currency"]) for b in intent_bodies(stripe_wire)] == [("12000", "usd")]
    # What PaymentSheet needs; no stripe_version, so no ephemeral key (localstripe has none).
    payment = Payment.objects.get(booking=held)
    assert body["payment_intent_id"] == payment.stripe_payment_intent_id
    assert body["client_secret"].startswith(f"{payment.stripe_payment_intent_id}_secret")
    assert body["customer_id"] == payment.stripe_customer_id
    assert body["customer_id"].startswith("cus_")
    assert (body["ephemeral_key_secret"], body["ephemeral_key_expires_at"]) == (None, None)
    assert body["publishable_key"] == PUBLISHABLE_KEY


@pytest.mark.parametrize(
    "sent",
    [
        {"amount": 0},
        {"amount": -100},
        {"amount": 12.5},
        {"amount": 10**12},
        {"amount": "lots"},
        {"amount": True},
        {"currency": "usd"},
        {"currency": "DOLLARS"},
        {"price": 1},
    ],
)
def test_pay_01_bad_amounts_are_400_and_change_nothing(
    held: Booking, client_user: User, sent: dict[str, Any], stripe_wire: list
) -> None:
    """PAY-01: zero, negative, fractional, huge or malformed amounts (and unknown fields) are
    400, and nothing is created or sent to Stripe."""
    response = api_client_for(client_user, mfa=False).post(pay_url(held), sent, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert Payment.objects.count() == 0
    assert stripe_wire == []


@pytest.mark.integration
def test_pay_02_double_click_gives_one_intent(
    localstripe: LocalStripe, held: Booking, client_user: User, stripe_wire: list[WireRequest]
) -> None:
    """PAY-02: two POST /pay for one booking → one payment row and one PaymentIntent."""
    api = api_client_for(client_user, mfa=False)
    first = api.post(pay_url(held), {}, format="json")
    second = api.post(pay_url(held), {}, format="json")
    assert first.status_code == second.status_code == 200
    assert first.json()["payment"]["id"] == second.json()["payment"]["id"]
    assert first.json()["client_secret"] == second.json()["client_secret"]
    assert Payment.objects.filter(booking=held).count() == 1
    assert len(intent_bodies(stripe_wire)) == 1


@pytest.mark.integration
def test_pay_02_a_retried_request_with_its_idempotency_key_is_replayed(
    localstripe: LocalStripe, held: Booking, client_user: User
) -> None:
    """PAY-02: a retry carrying the same Idempotency-Key gets the stored answer replayed."""
    api = api_client_for(client_user, mfa=False)
    first = api.post(pay_url(held), {}, format="json", HTTP_IDEMPOTENCY_KEY="pay-1")
    again = api.post(pay_url(held), {}, format="json", HTTP_IDEMPOTENCY_KEY="pay-1")
    assert again.status_code == 200
    assert again["Idempotency-Replayed"] == "true"
    assert again.json() == first.json()


def test_pay_04_someone_elses_booking_is_404_and_audited(
    held: Booking, outsider: User, stripe_wire: list
) -> None:
    """PAY-04: paying for a booking you don't own → 404, audited as denied, nothing sent."""
    response = api_client_for(outsider, mfa=False).post(pay_url(held), {}, format="json")
    assert response.status_code == 404
    assert Payment.objects.count() == 0
    assert stripe_wire == []
    # AUD-02: the URL names a booking: the denied row names it (and, unseen by the caller, its
    # client).
    denied = AuditEvent.objects.get(outcome="denied")
    assert (denied.action, denied.resource_type, denied.resource_id, denied.actor_id) == (
        "pay",
        "scheduling.booking",
        str(held.pk),
        outsider.pk,
    )
    assert denied.patient_id == held.client_id


def test_pay_04_an_unknown_booking_is_the_same_404(outsider: User) -> None:
    """PAY-04: an unknown booking answers like someone else's (404)."""
    response = api_client_for(outsider, mfa=False).post(
        "/api/v1/bookings/6f1c1d7e-8a43-4a8e-9d0b-2f5b2b0c9a11/pay", {}, format="json"
    )
    assert response.status_code == 404


def test_pay_04_the_therapist_does_not_pay(held: Booking, therapist: User) -> None:
    """PAY-04: only the booking's client pays; a therapist is refused by role."""
    response = api_client_for(therapist).post(pay_url(held), {}, format="json")
    assert response.status_code == 403
    assert Payment.objects.count() == 0


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"status": BookingStatus.CANCELLED, "hold_expires_at": None}, "booking_not_payable"),
        ({"status": BookingStatus.COMPLETED, "hold_expires_at": None}, "booking_not_payable"),
        ({"status": BookingStatus.CONFIRMED, "hold_expires_at": None}, "already_paid"),
        ({"hold_expires_at": NOW - timedelta(seconds=1)}, "hold_expired"),
        ({"price_minor": 0}, "nothing_to_pay"),
    ],
)
def test_pay_04_a_booking_that_cannot_be_paid_is_409(
    held: Booking, client_user: User, change: dict[str, Any], code: str, stripe_wire: list
) -> None:
    """PAY-04: a cancelled, completed, already paid, expired or free booking → 409."""
    Booking.objects.filter(pk=held.pk).update(**change)
    response = api_client_for(client_user, mfa=False).post(pay_url(held), {}, format="json")
    assert response.status_code == 409
    body = response.json()
    assert (body["status"], body["code"]) == (409, code)
    if code == "booking_not_payable":
        assert body["current_status"] == change["status"]
    assert Payment.objects.count() == 0
    assert stripe_wire == []


def test_pay_04_a_session_in_the_past_is_409(held: Booking, client_user: User) -> None:
    """PAY-04: a session that has started → 409 booking_in_past."""
    Booking.objects.filter(pk=held.pk).update(
        start=NOW - timedelta(hours=1),
        end=NOW - timedelta(minutes=10),
        blocked_start=NOW - timedelta(hours=1),
        blocked_end=NOW - timedelta(minutes=10),
        hold_expires_at=NOW + timedelta(minutes=10),
    )
    response = api_client_for(client_user, mfa=False).post(pay_url(held), {}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "booking_in_past"


def test_pay_17_stripe_down_is_a_retryable_503_and_the_booking_stays_held(
    settings: Any, held: Booking, client_user: User
) -> None:
    settings.STRIPE_SECRET_KEY = "sk_test_down"
    settings.STRIPE_PUBLISHABLE_KEY = PUBLISHABLE_KEY
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{free_port()}"
    settings.STRIPE_MAX_RETRIES = 0
    response = api_client_for(client_user, mfa=False).post(pay_url(held), {}, format="json")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "payment_pending"
    held.refresh_from_db()
    assert held.status == BookingStatus.HELD
    assert Payment.objects.count() == 0


def test_payments_are_listed_for_their_client_and_therapist_only(
    client_user: User, outsider: User, therapist: User, other_therapist: User
) -> None:
    mine = make_payment(client=client_user, therapist=therapist, now=NOW)
    theirs = make_payment(client=outsider, therapist=other_therapist, now=NOW)

    as_client = api_client_for(client_user, mfa=False).get("/api/v1/billing/payments")
    assert as_client.status_code == 200
    assert [p["id"] for p in as_client.json()["results"]] == [str(mine.pk)]
    assert as_client.json()["results"][0]["booking"] == str(mine.booking_id)

    as_therapist = api_client_for(other_therapist).get("/api/v1/billing/payments")
    assert [p["id"] for p in as_therapist.json()["results"]] == [str(theirs.pk)]

    reads = AuditEvent.objects.filter(resource_type="billing.payment").order_by("pk")
    assert [(r.action, r.actor_id, r.patient_id, r.details["ids"]) for r in reads] == [
        ("list", client_user.pk, client_user.pk, [str(mine.pk)]),
        ("list", other_therapist.pk, outsider.pk, [str(theirs.pk)]),
    ]


def test_aud_20_a_page_of_100_clients_payments_is_audited_in_one_insert(therapist: User) -> None:
    """AUD-20 (and AUD-01): a therapist's page of 100 payments of 100 clients writes one row
    per client in one INSERT (split only by SQLite's parameter limit), not 100 single-row
    inserts each committed on its own."""
    clients = [make_user(role=Role.CLIENT) for _ in range(100)]
    for n, client in enumerate(clients):
        make_payment(client=client, therapist=therapist, now=NOW, starts_in=timedelta(days=2 + n))
    with CaptureQueriesContext(connection) as queries:
        response = api_client_for(therapist).get("/api/v1/billing/payments?page_size=100")
    assert response.status_code == 200
    assert len(response.json()["results"]) == 100
    inserts = [q["sql"] for q in queries if q["sql"].startswith("INSERT INTO audit_event")]
    per_statement = (connection.features.max_query_params or 65535) // len(EVENT_COLUMNS)
    assert len(inserts) == math.ceil(100 / per_statement)
    reads = AuditEvent.objects.filter(resource_type="billing.payment", action="list")
    assert sorted(str(r.patient_id) for r in reads) == sorted(str(c.pk) for c in clients)
    assert {r.actor_id for r in reads} == {therapist.pk}


def test_compliance_officers_do_not_list_payments(compliance_officer: User) -> None:
    response = api_client_for(compliance_officer).get("/api/v1/billing/payments")
    assert response.status_code == 403
    denied = AuditEvent.objects.get(resource_type="billing.payment")
    assert (denied.action, denied.outcome, denied.actor_id) == (
        "list",
        "denied",
        compliance_officer.pk,
    )


def test_therapists_need_their_second_factor(therapist: User) -> None:
    response = api_client_for(therapist, mfa=False).get("/api/v1/billing/payments")
    assert response.status_code == 403
