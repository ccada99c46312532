"""The Stripe webhook endpoint: what it refuses, and that each event applies once and in order.

Events here are built in Stripe's CURRENT shapes and signed with Stripe's scheme by the test
(stripe_doubles.signed), because localstripe sends no refund or dispute events, speaks an old API
version, and cannot be made to deliver duplicates, reordered or other-mode events on purpose.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from api.models import User
from audit.models import AuditEvent
from billing import gateways
from billing.gateways.stripe import StripeGateway
from billing.models import Payment, PaymentEvent, StripeEvent
from scheduling.models import Booking
from tests.billing.conftest import WEBHOOK_URL, make_payment, post_webhook
from tests.billing.stripe_doubles import (
    WEBHOOK_SECRET,
    Reply,
    charge_object,
    dispute_object,
    event,
    payment_intent_object,
    scripted_stripe,
    signature,
    signed,
)
from tests.clock import clock_instant
from tests.concurrency import run_at_once

# Webhooks are applied at the real time: bookings must be held now, not on a fixed date.
NOW = clock_instant()  # the instant the views run at (tests/clock.py)

pytestmark = pytest.mark.usefixtures("webhook_secret")


def succeeded(payment: Payment, *, event_id: str = "evt_ok_1", **kwargs: Any) -> dict:
    intent = payment_intent_object(
        intent_id=str(payment.stripe_payment_intent_id),
        status="succeeded",
        amount_received=payment.amount_minor,
        latest_charge="ch_1",
        metadata={"payment_ref": str(payment.pk), "booking_ref": str(payment.booking_id)},
        **kwargs,
    )
    return event("payment_intent.succeeded", intent, event_id=event_id)


def snapshot(payment: Payment) -> tuple:
    payment.refresh_from_db()
    return (
        payment.state,
        payment.amount_captured_minor,
        payment.amount_refunded_minor,
        payment.disputed_at,
        PaymentEvent.objects.filter(payment=payment).count(),
    )


@pytest.fixture
def payment(client_user: User, therapist: User) -> Payment:
    return make_payment(client=client_user, therapist=therapist, now=NOW)


# --- PAY-06: what is refused --------------------------------------------------------------------


def test_a_valid_event_is_applied_and_acknowledged(payment: Payment) -> None:
    response = post_webhook(*signed(succeeded(payment)))
    assert response.status_code == 200
    assert response.json() == {"received": True}
    payment.refresh_from_db()
    assert payment.state == "succeeded"
    assert payment.amount_captured_minor == 12000
    assert payment.stripe_charge_id == "ch_1"


@pytest.mark.parametrize(
    "make_header",
    [
        pytest.param(lambda body: None, id="missing"),
        pytest.param(lambda body: "", id="empty"),
        pytest.param(lambda body: "garbage", id="malformed"),
        pytest.param(lambda body: "t=notanumber,v1=abc", id="malformed-timestamp"),
        pytest.param(lambda body: signature(body).replace("v1=", "v0="), id="no-v1-scheme"),
        pytest.param(lambda body: signature(body, secret="whsec_wrong"), id="wrong-secret"),
        pytest.param(
            lambda body: signature(body, timestamp=int(time.time()) - 301), id="stale-301s"
        ),
    ],
)
def test_pay_06_bad_signatures_are_refused_and_change_nothing(
    payment: Payment, make_header: Any
) -> None:
    body = json.dumps(succeeded(payment)).encode()
    before = snapshot(payment)
    response = post_webhook(body, make_header(body))
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "invalid_webhook"
    assert snapshot(payment) == before
    assert StripeEvent.objects.count() == 0
    assert (
        AuditEvent.objects.filter(action="billing.webhook.rejected", outcome="denied").count() == 1
    )


def test_pay_06_a_timestamp_inside_the_tolerance_is_accepted(payment: Payment) -> None:
    body = json.dumps(succeeded(payment)).encode()
    assert post_webhook(body, signature(body, timestamp=int(time.time()) - 250)).status_code == 200


def test_pay_06_a_reserialised_body_is_refused(payment: Payment) -> None:
    """The signature covers the raw bytes: the same JSON with other whitespace is refused."""
    body, sig = signed(succeeded(payment))
    reserialised = json.dumps(json.loads(body), separators=(",", ":")).encode()
    before = snapshot(payment)
    assert post_webhook(reserialised, sig).status_code == 400
    assert snapshot(payment) == before


def test_pay_06_bodies_that_are_not_events_are_refused(payment: Payment) -> None:
    for body in (b"\xff\xfe not utf-8", b"[1, 2]", b'{"id": "evt_1"}', b"not json"):
        assert post_webhook(body, signature(body)).status_code == 400
    assert StripeEvent.objects.count() == 0
    assert snapshot(payment)[0] == "requires_payment_method"


def test_pay_06_a_signed_body_nested_too_deep_is_refused(payment: Payment) -> None:
    """A correctly signed event nested 1000 deep is a 400, like any request body (was a 500:
    RecursionError in the event parser)."""
    event = json.dumps(succeeded(payment))
    body = (event[:-1] + ', "deep": ' + "[" * 1000 + "]" * 1000 + "}").encode()
    response = post_webhook(body, signature(body))
    assert response.status_code == 400
    assert StripeEvent.objects.count() == 0
    assert snapshot(payment)[0] == "requires_payment_method"


@pytest.mark.parametrize("secret", ["", "   "])
def test_pay_06_an_empty_secret_fails_closed(settings: Any, payment: Payment, secret: str) -> None:
    """With no endpoint secret the endpoint refuses everything, even a body "signed" with ""."""
    settings.STRIPE_WEBHOOK_SECRET = secret
    body = json.dumps(succeeded(payment)).encode()
    response = post_webhook(body, signature(body, secret=secret))
    assert response.status_code == 503
    assert response.json()["code"] == "webhooks_not_configured"
    assert StripeEvent.objects.count() == 0
    assert snapshot(payment)[0] == "requires_payment_method"


def test_pay_06_no_header_can_supply_the_secret(payment: Payment) -> None:
    """The dj-stripe DEBUG pattern (a secret taken from the request) does not exist here."""
    body = json.dumps(succeeded(payment)).encode()
    response = post_webhook(
        body,
        signature(body, secret="whsec_attacker"),
        HTTP_STRIPE_WEBHOOK_SECRET="whsec_attacker",
        HTTP_X_STRIPE_WEBHOOK_SECRET="whsec_attacker",
    )
    assert response.status_code == 400
    assert snapshot(payment)[0] == "requires_payment_method"


# --- PAY-18: the route itself -------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_pay_18_only_post_is_accepted(method: str, db: None) -> None:
    response = getattr(APIClient(), method)(WEBHOOK_URL)
    assert response.status_code == 405
    assert StripeEvent.objects.count() == 0


def test_pay_18_a_body_over_the_limit_is_refused_before_it_is_read(
    settings: Any, payment: Payment
) -> None:
    settings.STRIPE_WEBHOOK_MAX_BYTES = 1024
    body = json.dumps({**succeeded(payment), "padding": "x" * 2048}).encode()
    response = post_webhook(body, signature(body))
    assert response.status_code == 413
    assert StripeEvent.objects.count() == 0
    assert snapshot(payment)[0] == "requires_payment_method"


def test_pay_18_csrf_exempt_only_there(payment: Payment, admin_user: User) -> None:
    """The webhook takes a POST without a CSRF token; a session form (the admin login) still
    needs one."""
    csrf_client = Client(enforce_csrf_checks=True)
    body, sig = signed(succeeded(payment))
    assert post_webhook(body, sig, client=csrf_client).status_code == 200
    login = csrf_client.post("/admin/login/", {"username": admin_user.email, "password": "x"})
    assert login.status_code == 403


# --- PAY-07: exactly once -----------------------------------------------------------------------


def test_pay_07_a_duplicate_delivery_changes_nothing_and_gets_200(payment: Payment) -> None:
    body, sig = signed(succeeded(payment))
    assert post_webhook(body, sig).status_code == 200
    after_first = snapshot(payment)
    assert post_webhook(body, sig).status_code == 200
    assert snapshot(payment) == after_first
    assert StripeEvent.objects.filter(event_id="evt_ok_1").count() == 1
    assert PaymentEvent.objects.filter(payment=payment, to_state="succeeded").count() == 1


@pytest.mark.postgres
def test_pay_07_concurrent_duplicates_apply_once_and_all_get_200(
    app_server: str, client_user: User, therapist: User
) -> None:
    """Eight simultaneous deliveries of one event over real HTTP and real connections."""
    payment = make_payment(client=client_user, therapist=therapist, now=NOW)
    body, sig = signed(succeeded(payment, event_id="evt_concurrent"))

    def deliver(_: int) -> int:
        request = urllib.request.Request(  # noqa: S310 - loopback
            f"{app_server}{WEBHOOK_URL}",
            data=body,
            headers={"Content-Type": "application/json", "Stripe-Signature": sig},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return int(response.status)

    assert run_at_once(deliver, 8, timeout=60) == [200] * 8
    assert StripeEvent.objects.filter(event_id="evt_concurrent").count() == 1
    assert PaymentEvent.objects.filter(payment=payment, to_state="succeeded").count() == 1
    assert (
        AuditEvent.objects.filter(
            action="billing.payment.state_changed", resource_id=str(payment.pk)
        ).count()
        == 1
    )


# --- PAY-08: out of order -----------------------------------------------------------------------


def test_pay_08_refund_before_success_ends_refunded(payment: Payment) -> None:
    intent_id = str(payment.stripe_payment_intent_id)
    refunded = event(
        "charge.refunded",
        charge_object(charge_id="ch_1", intent_id=intent_id, amount_refunded=12000),
        event_id="evt_refunded",
    )
    assert post_webhook(*signed(refunded)).status_code == 200
    assert post_webhook(*signed(succeeded(payment))).status_code == 200
    payment.refresh_from_db()
    assert (payment.state, payment.amount_captured_minor, payment.amount_refunded_minor) == (
        "refunded",
        12000,
        12000,
    )
    outcomes = dict(StripeEvent.objects.values_list("event_id", "outcome"))
    assert outcomes == {"evt_refunded": "applied", "evt_ok_1": "stale"}


def test_pay_08_a_failure_after_success_is_stale(payment: Payment) -> None:
    failed = event(
        "payment_intent.payment_failed",
        payment_intent_object(
            intent_id=str(payment.stripe_payment_intent_id), status="requires_payment_method"
        ),
        event_id="evt_failed_late",
    )
    post_webhook(*signed(succeeded(payment)))
    assert post_webhook(*signed(failed)).status_code == 200
    payment.refresh_from_db()
    assert payment.state == "succeeded"


@pytest.mark.parametrize("stripe_says", ["succeeded", "canceled"])
def test_pay_08_success_after_cancel_asks_stripe_for_the_truth(
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
    client_user: User,
    therapist: User,
    stripe_says: str,
) -> None:
    payment = make_payment(client=client_user, therapist=therapist, now=NOW, state="canceled")
    truth = payment_intent_object(
        intent_id=str(payment.stripe_payment_intent_id),
        status=stripe_says,
        amount_received=12000 if stripe_says == "succeeded" else 0,
    )
    with scripted_stripe([Reply(200, truth)]) as stripe_server:
        monkeypatch.setattr(
            gateways,
            "get_gateway",
            lambda: StripeGateway(
                api_key="sk_test_x",
                webhook_secret=WEBHOOK_SECRET,
                api_base=stripe_server.url,
                max_retries=0,
            ),
        )
        assert post_webhook(*signed(succeeded(payment))).status_code == 200
        fetched = [r.path for r in stripe_server.received]
    assert fetched == [f"/v1/payment_intents/{payment.stripe_payment_intent_id}"]
    payment.refresh_from_db()
    assert payment.state == stripe_says
    if stripe_says == "succeeded":
        assert payment.history.get().reason == "reconciled_from_stripe"


# --- PAY-09 / PAY-10: whom an event concerns ----------------------------------------------------


def test_pay_09_unknown_intent_pointing_at_our_booking_changes_nothing(payment: Payment) -> None:
    """An intent we never created, whose metadata names our payment and booking: 200 (Stripe
    must stop retrying), a security record, and our payment untouched."""
    foreign = event(
        "payment_intent.succeeded",
        payment_intent_object(
            intent_id="pi_not_ours",
            status="succeeded",
            amount_received=12000,
            metadata={"payment_ref": str(payment.pk), "booking_ref": str(payment.booking_id)},
        ),
        event_id="evt_foreign",
    )
    before = snapshot(payment)
    assert post_webhook(*signed(foreign)).status_code == 200
    assert snapshot(payment) == before
    assert StripeEvent.objects.get().outcome == "unknown_object"
    security = AuditEvent.objects.get(action="billing.webhook.unknown_intent")
    assert (security.outcome, security.resource_id) == ("denied", "evt_foreign")


def test_pay_09_metadata_naming_another_payment_is_not_followed(
    payment: Payment, client_user: User, therapist: User
) -> None:
    other = make_payment(client=client_user, therapist=therapist, now=NOW)
    crafted = succeeded(payment)
    crafted["data"]["object"]["metadata"] = {"payment_ref": str(other.pk)}
    before_other = snapshot(other)
    assert post_webhook(*signed(crafted)).status_code == 200
    assert snapshot(other) == before_other
    payment.refresh_from_db()
    assert payment.state == "succeeded"  # the intent we stored for it did succeed
    assert AuditEvent.objects.filter(action="billing.webhook.metadata_mismatch").count() == 1


def test_pay_10_an_event_of_the_other_mode_is_ignored_and_logged(
    payment: Payment, settings: Any
) -> None:
    live = succeeded(payment)
    live["livemode"] = True
    before = snapshot(payment)
    assert post_webhook(*signed(live)).status_code == 200
    assert snapshot(payment) == before
    assert StripeEvent.objects.get().outcome == "ignored_livemode"
    assert AuditEvent.objects.filter(action="billing.webhook.livemode_mismatch").count() == 1

    settings.STRIPE_LIVEMODE = True
    test_mode = succeeded(payment, event_id="evt_test_mode")
    assert post_webhook(*signed(test_mode)).status_code == 200
    assert snapshot(payment) == before


# --- disputes and the rest ----------------------------------------------------------------------


def test_pay_15_a_dispute_flags_the_payment_and_is_audited(
    client_user: User, therapist: User
) -> None:
    payment = make_payment(
        client=client_user, therapist=therapist, now=NOW, state="succeeded", captured_minor=12000
    )
    dispute = event(
        "charge.dispute.created",
        dispute_object(
            dispute_id="dp_1", charge_id="ch_1", intent_id=str(payment.stripe_payment_intent_id)
        ),
        event_id="evt_dispute",
    )
    assert post_webhook(*signed(dispute)).status_code == 200
    payment.refresh_from_db()
    assert payment.disputed_at is not None
    audit = AuditEvent.objects.get(action="billing.payment.disputed")
    assert audit.patient_id == client_user.pk
    assert audit.details == {"stripe_event": "evt_dispute", "dispute": "dp_1"}


def test_an_event_type_we_do_not_handle_is_recorded(payment: Payment) -> None:
    other = event("customer.created", {"id": "cus_1", "object": "customer"}, event_id="evt_cus")
    assert post_webhook(*signed(other)).status_code == 200
    assert StripeEvent.objects.get().outcome == "unhandled_type"


def test_pay_13_an_authorization_that_expired_before_capture_marks_the_session_unpaid(
    client_user: User, therapist: User
) -> None:
    """PAY-13: a manually captured payment whose authorization ran out: Stripe cancels the
    intent. The confirmed session stays booked, the payment is canceled (unpaid), and it is
    flagged; a fee due later is charged off-session (test_fees.py)."""
    payment = make_payment(
        client=client_user, therapist=therapist, now=NOW, state="requires_capture"
    )
    Booking.objects.filter(pk=payment.booking_id).update(status="confirmed", hold_expires_at=None)
    canceled = event(
        "payment_intent.canceled",
        {
            **payment_intent_object(
                intent_id=str(payment.stripe_payment_intent_id), status="canceled"
            ),
            "cancellation_reason": "automatic",
        },
        event_id="evt_auth_expired",
    )
    assert post_webhook(*signed(canceled)).status_code == 200
    payment.refresh_from_db()
    assert payment.state == "canceled"
    assert Booking.objects.get(pk=payment.booking_id).status == "confirmed"
    flag = AuditEvent.objects.get(action="billing.payment.uncollected")
    assert (flag.outcome, flag.details["why"]) == ("error", "payment_canceled")


def test_a_failed_payment_releases_the_held_booking(payment: Payment) -> None:
    failed = event(
        "payment_intent.payment_failed",
        payment_intent_object(
            intent_id=str(payment.stripe_payment_intent_id), status="requires_payment_method"
        ),
        event_id="evt_failed",
    )
    assert post_webhook(*signed(failed)).status_code == 200
    assert Booking.objects.get(pk=payment.booking_id).status == "cancelled"
    payment.refresh_from_db()
    assert payment.state == "requires_payment_method"
