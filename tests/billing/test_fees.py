"""Late-cancellation and no-show fees charged off-session to the client's saved card, when they
cannot be kept from a collected payment (PAY-11, PAY-13).

Charges go to localstripe (confirmed off-session PaymentIntents, its declining card
4000000000000341 and its 3-D Secure card 4000002500003155, which the client then authenticates
through localstripe's ``_authenticate``). Two answers localstripe cannot give come from the
scripted server in Stripe's current shapes: the 402 ``authentication_required`` that Stripe
returns for an off-session charge needing 3-D Secure (localstripe answers 200
``requires_action``), and Stripe refusing to cancel an intent whose authorization already expired
(localstripe cancels anything); the ``payment_intent.succeeded`` that follows authentication is
a signed Stripe-shaped event (localstripe sends it only to a registered live server).
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

import pytest
from django.core import mail

from api.models import User
from audit.models import AuditEvent
from billing import gateways
from billing.gateways.stripe import StripeGateway
from billing.models import Payment, PaymentMethodSetup, SavedPaymentMethod
from billing.services.lifecycle import billing_settle, fee_request_process
from scheduling.bookings.services import booking_cancel, booking_mark_no_show
from scheduling.models import Booking, BookingStatus, FeeRequest
from tests.billing.conftest import (
    WireRequest,
    booking_for,
    client_sdk,
    make_payment,
    post_webhook,
    saved_card,
)
from tests.billing.stripe_doubles import (
    LOCALSTRIPE_KEY,
    LocalStripe,
    Reply,
    event,
    payment_intent_object,
    scripted_stripe,
    signed,
    stripe_error,
)
from tests.clock import clock_instant
from tests.factories import api_client_for

pytestmark = pytest.mark.integration

NOW = clock_instant()  # the instant the views run at (tests/clock.py)
LATE = {"cancel_free_hours": 72, "late_fee_kind": "percent", "late_fee_value": 50}


def intents_created(wire: list[WireRequest]) -> list[tuple[str | None, dict[str, str]]]:
    return [
        (r.idempotency_key, dict(parse_qsl(r.body)))
        for r in wire
        if r.method == "post" and r.url.endswith("/v1/payment_intents")
    ]


def late_cancelled_with_expired_authorization(client: User, therapist: User) -> FeeRequest:
    """A confirmed session whose authorization expired before capture (Stripe canceled the
    intent, PAY-13), then cancelled by the client inside the late window: a 6000 fee is due."""
    session = make_payment(client=client, therapist=therapist, now=NOW, state="canceled")
    Booking.objects.filter(pk=session.booking_id).update(
        status=BookingStatus.CONFIRMED, hold_expires_at=None, **LATE
    )
    booking_cancel(booking_id=session.booking_id, by=client, reason="other", now=NOW)
    return FeeRequest.objects.get(booking_id=session.booking_id)


def test_pay_13_a_late_fee_after_the_authorization_expired_is_charged_off_session(
    localstripe: LocalStripe, client_user: User, therapist: User, stripe_wire: list[WireRequest]
) -> None:
    """PAY-13 / PAY-11: no collected payment to keep the late fee from, so it is charged to the
    saved card: confirmed off-session, its own purpose, a deterministic key."""
    method_id = saved_card(localstripe, client_user)
    fee_request = late_cancelled_with_expired_authorization(client_user, therapist)

    assert fee_request_process(fee_request_id=fee_request.pk, now=NOW) is True

    fee = Payment.objects.get(purpose="late_cancellation_fee")
    assert (fee.state, fee.amount_minor, fee.amount_captured_minor, fee.version) == (
        "succeeded",
        6000,
        6000,
        1,
    )
    ((key, sent),) = intents_created(stripe_wire)
    assert key == f"billing:payment_intent:{fee.booking_id}:late_cancellation_fee:1"
    assert (sent["amount"], sent["currency"], sent["payment_method"]) == ("6000", "usd", method_id)
    assert (sent["confirm"], sent["off_session"]) == ("true", "true")
    assert sent["metadata[payment_ref]"] == str(fee.pk)
    fee_request.refresh_from_db()
    assert fee_request.state == "settled"


def test_pay_11_a_client_no_show_on_a_session_paid_outside_charges_the_no_show_fee(
    localstripe: LocalStripe, client_user: User, therapist: User
) -> None:
    """PAY-11: the therapist marks the client absent; the booking's late fee is the no-show fee,
    charged to the saved card since nothing was paid through us."""
    saved_card(localstripe, client_user)
    booking = booking_for(
        client=client_user,
        therapist=therapist,
        now=NOW,
        status=BookingStatus.CONFIRMED,
        starts_in=timedelta(hours=-13),  # started (whatever hour booking_for adds)
        late_fee_kind="fixed",
        late_fee_value=5000,
    )

    booking_mark_no_show(booking_id=booking.pk, by=therapist, now=NOW)
    fee_request = FeeRequest.objects.get(booking=booking)
    assert (fee_request.kind, fee_request.reason, fee_request.fee_minor) == (
        "no_show_fee",
        "client_no_show",
        5000,
    )
    fee_request_process(fee_request_id=fee_request.pk, now=NOW)

    fee = Payment.objects.get(booking=booking)
    assert (fee.purpose, fee.state, fee.amount_captured_minor) == ("no_show_fee", "succeeded", 5000)


def test_a_declined_fee_is_failed_visible_and_retried_a_bounded_number_of_times(
    localstripe: LocalStripe,
    settings: Any,
    client_user: User,
    therapist: User,
    stripe_wire: list[WireRequest],
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.BILLING_FEE_MAX_ATTEMPTS = 3
    settings.BILLING_FEE_RETRY_HOURS = 24
    saved_card(localstripe, client_user, number="4000000000000341")  # declines when charged
    fee_request = late_cancelled_with_expired_authorization(client_user, therapist)

    with django_capture_on_commit_callbacks(execute=True):
        report = billing_settle(now=NOW)

    assert report["fee_requests_settled"] == 0  # tried and put off: not settled
    first = Payment.objects.get(purpose="late_cancellation_fee")
    assert (first.state, first.last_error_code) == ("failed", "card_declined")
    fee_request.refresh_from_db()
    assert (fee_request.state, fee_request.claimed_until) == ("pending", NOW + timedelta(hours=24))
    (message,) = [m for m in mail.outbox if m.subject == "We could not charge your card"]
    assert message.to == [client_user.email]
    assert "60.00 USD" in message.body and "We will try again." in message.body
    assert client_user.full_name not in message.body
    failed = AuditEvent.objects.get(action="billing.fee.charge_failed")
    assert (failed.outcome, failed.patient_id, failed.details["failure"]) == (
        "error",
        client_user.pk,
        "card_declined",
    )
    listed = api_client_for(client_user, mfa=False).get("/api/v1/billing/payments").json()
    fees = [p for p in listed["results"] if p["purpose"] == "late_cancellation_fee"]
    assert [(p["state"], p["failure_code"]) for p in fees] == [("failed", "card_declined")]

    billing_settle(now=NOW + timedelta(hours=1))  # too early for the next attempt
    assert Payment.objects.filter(purpose="late_cancellation_fee").count() == 1

    settled = []
    for hours in (25, 50, 75):  # the third attempt is the last: nothing is left to try at 75
        with django_capture_on_commit_callbacks(execute=True):
            settled.append(billing_settle(now=NOW + timedelta(hours=hours))["fee_requests_settled"])
    assert settled == [0, 1, 0]  # given up after the third attempt, and counted once

    assert list(
        Payment.objects.filter(purpose="late_cancellation_fee")
        .order_by("version")
        .values_list("version", "state")
    ) == [(1, "failed"), (2, "failed"), (3, "failed")]
    keys = [key for key, _ in intents_created(stripe_wire)]
    assert keys == [
        f"billing:payment_intent:{first.booking_id}:late_cancellation_fee:{n}" for n in (1, 2, 3)
    ]
    fee_request.refresh_from_db()
    assert fee_request.state == "settled"
    given_up = AuditEvent.objects.get(action="billing.fee.uncollected")
    assert given_up.details == {"fee_minor": 6000, "why": "attempts_exhausted", "attempts": 3}
    last = [m for m in mail.outbox if m.subject == "We could not charge your card"][-1]
    assert "We will try again." not in last.body


def test_a_fee_with_no_saved_card_fails_without_calling_stripe(
    localstripe: LocalStripe,
    client_user: User,
    therapist: User,
    stripe_wire: list[WireRequest],
    django_capture_on_commit_callbacks: Any,
) -> None:
    fee_request = late_cancelled_with_expired_authorization(client_user, therapist)

    with django_capture_on_commit_callbacks(execute=True):
        fee_request_process(fee_request_id=fee_request.pk, now=NOW)

    fee = Payment.objects.get(purpose="late_cancellation_fee")
    assert (fee.state, fee.last_error_code, fee.stripe_payment_intent_id) == (
        "failed",
        "no_saved_payment_method",
        None,
    )
    assert intents_created(stripe_wire) == []
    (message,) = [m for m in mail.outbox if m.subject == "We could not charge your card"]
    assert "Please add a card in the app." in message.body


AUTHENTICATE = "/api/v1/billing/payments/{}/authenticate"
CONFIRM_SUBJECT = "Please confirm a payment in the app"


def authenticate_at_localstripe(localstripe: LocalStripe, intent_id: str, secret: str) -> None:
    """What Stripe's SDK does with the client secret once the client passed 3-D Secure."""
    body = urllib.parse.urlencode({"client_secret": secret, "success": "true"}).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback http only
        f"{localstripe.url}/v1/payment_intents/{intent_id}/_authenticate",
        data=body,
        headers={"Authorization": f"Bearer {LOCALSTRIPE_KEY}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        assert response.status == 200


def test_a_fee_needing_3d_secure_waits_for_the_client_who_authenticates_it_in_the_app(
    localstripe: LocalStripe,
    client_user: User,
    therapist: User,
    stripe_wire: list[WireRequest],
    django_capture_on_commit_callbacks: Any,
) -> None:
    """localstripe answers an off-session charge of a 3-D Secure card with ``requires_action``.
    Stripe's recommended recovery: the intent is left for the client, who is emailed, fetches
    its client secret from the app and confirms it; ``payment_intent.succeeded`` collects it."""
    saved_card(localstripe, client_user, number="4000002500003155")
    fee_request = late_cancelled_with_expired_authorization(client_user, therapist)

    with django_capture_on_commit_callbacks(execute=True):
        assert fee_request_process(fee_request_id=fee_request.pk, now=NOW) is False  # it waits

    fee = Payment.objects.get(purpose="late_cancellation_fee")
    intent_id = str(fee.stripe_payment_intent_id)
    assert (fee.state, fee.last_error_code) == ("requires_action", "authentication_required")
    assert not [r for r in stripe_wire if r.url.endswith("/cancel")]
    fee_request.refresh_from_db()
    assert (fee_request.state, fee_request.claimed_until) == ("pending", NOW + timedelta(hours=24))
    (message,) = [m for m in mail.outbox if m.subject == CONFIRM_SUBJECT]
    assert message.to == [client_user.email]
    assert "60.00 USD" in message.body and "open the app" in message.body
    assert client_user.full_name not in message.body
    assert not [m for m in mail.outbox if m.subject == "We could not charge your card"]
    flagged = AuditEvent.objects.get(action="billing.fee.authentication_required")
    assert (flagged.resource_id, flagged.patient_id) == (str(fee.pk), client_user.pk)
    assert not AuditEvent.objects.filter(action="billing.fee.charge_failed").exists()
    # Stripe's own event for the waiting intent carries no error: the reason is kept.
    waiting = event(
        "payment_intent.requires_action",
        payment_intent_object(
            intent_id=intent_id,
            status="requires_action",
            amount=6000,
            metadata={"payment_ref": str(fee.pk)},
        ),
        event_id="evt_fee_waiting",
    )
    assert post_webhook(*signed(waiting)).status_code == 200
    api = api_client_for(client_user, mfa=False)
    listed = api.get("/api/v1/billing/payments").json()["results"]
    assert [(p["state"], p["failure_code"]) for p in listed if p["id"] == str(fee.pk)] == [
        ("requires_action", "authentication_required")
    ]

    response = api.post(AUTHENTICATE.format(fee.pk))

    assert response.status_code == 200
    body = response.json()
    assert body["payment"]["id"] == str(fee.pk)
    assert body["client_secret"].startswith(f"{intent_id}_secret")
    [audit] = AuditEvent.objects.filter(action__in=["billing.payment.authenticate", "create"])
    assert (audit.action, audit.actor_id, audit.resource_id, audit.patient_id) == (
        "billing.payment.authenticate",
        client_user.pk,
        str(fee.pk),
        client_user.pk,
    )
    authenticate_at_localstripe(localstripe, intent_id, body["client_secret"])
    assert client_sdk(localstripe).v1.payment_intents.retrieve(intent_id).status == "succeeded"
    succeeded = event(
        "payment_intent.succeeded",
        payment_intent_object(
            intent_id=intent_id,
            status="succeeded",
            amount=6000,
            amount_received=6000,
            metadata={"payment_ref": str(fee.pk)},
        ),
        event_id="evt_fee_authenticated",
    )
    assert post_webhook(*signed(succeeded)).status_code == 200
    fee.refresh_from_db()
    assert (fee.state, fee.amount_captured_minor) == ("succeeded", 6000)

    billing_settle(now=NOW + timedelta(hours=25))

    fee_request.refresh_from_db()
    assert fee_request.state == "settled"
    assert len(intents_created(stripe_wire)) == 1  # never charged again
    again = api.post(AUTHENTICATE.format(fee.pk))
    assert (again.status_code, again.json()["code"]) == (409, "not_awaiting_authentication")


def test_billing_settle_gives_up_a_fee_the_client_does_not_authenticate_in_time(
    localstripe: LocalStripe,
    settings: Any,
    client_user: User,
    therapist: User,
    stripe_wire: list[WireRequest],
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.BILLING_FEE_MAX_ATTEMPTS = 3
    settings.BILLING_FEE_RETRY_HOURS = 24
    saved_card(localstripe, client_user, number="4000002500003155")
    fee_request = late_cancelled_with_expired_authorization(client_user, therapist)
    with django_capture_on_commit_callbacks(execute=True):
        billing_settle(now=NOW)

    for hours in (25, 50):  # re-read, not charged again, no second email
        with django_capture_on_commit_callbacks(execute=True):
            billing_settle(now=NOW + timedelta(hours=hours))
    fee = Payment.objects.get(purpose="late_cancellation_fee")
    assert fee.state == "requires_action"
    fee_request.refresh_from_db()
    assert (fee_request.state, fee_request.claimed_until) == ("pending", NOW + timedelta(hours=72))

    billing_settle(now=NOW + timedelta(hours=72))  # 24 h x 3 attempts: given up

    fee.refresh_from_db()
    assert (fee.state, fee.last_error_code) == ("failed", "authentication_required")
    assert len(intents_created(stripe_wire)) == 1
    cancels = [r for r in stripe_wire if r.url.endswith(f"{fee.stripe_payment_intent_id}/cancel")]
    assert [r.idempotency_key for r in cancels] == [f"billing:payment_intent_cancel:{fee.pk}"]
    fee_request.refresh_from_db()
    assert fee_request.state == "settled"
    expired = AuditEvent.objects.get(action="billing.fee.authentication_expired")
    assert (expired.outcome, expired.patient_id) == ("error", client_user.pk)
    given_up = AuditEvent.objects.get(action="billing.fee.uncollected")
    assert given_up.details == {
        "fee_minor": 6000,
        "why": "authentication_not_completed",
        "attempts": 1,
    }
    assert len([m for m in mail.outbox if m.subject == CONFIRM_SUBJECT]) == 1
    response = api_client_for(client_user, mfa=False).post(AUTHENTICATE.format(fee.pk))
    assert (response.status_code, response.json()["code"]) == (409, "not_awaiting_authentication")


def test_only_the_client_s_own_fee_waiting_for_them_can_be_authenticated(
    client_user: User, outsider: User, therapist: User, stripe_wire: list[WireRequest]
) -> None:
    """AZ-01 / AUD-02: someone else's payment is 404 and audited as denied; a session payment
    (paid through its own flow) is 409; staff get 403. Nothing is asked of Stripe."""
    fee = make_payment(
        client=client_user,
        therapist=therapist,
        now=NOW,
        state="requires_action",
        purpose="late_cancellation_fee",
    )
    session = make_payment(client=client_user, therapist=therapist, now=NOW)

    outsiders = api_client_for(outsider, mfa=False).post(AUTHENTICATE.format(fee.pk))
    session_answer = api_client_for(client_user, mfa=False).post(AUTHENTICATE.format(session.pk))
    staff = api_client_for(therapist).post(AUTHENTICATE.format(fee.pk))

    assert outsiders.status_code == 404
    assert (session_answer.status_code, session_answer.json()["code"]) == (
        409,
        "not_awaiting_authentication",
    )
    assert staff.status_code == 403
    assert stripe_wire == []
    denied = AuditEvent.objects.get(outcome="denied", actor_id=outsider.pk)
    assert (denied.action, denied.resource_id, denied.patient_id) == (
        "authenticate",
        str(fee.pk),
        client_user.pk,
    )


def saved_card_row(client: User) -> SavedPaymentMethod:
    setup = PaymentMethodSetup.objects.create(
        client=client,
        version=1,
        stripe_customer_id="cus_1",
        stripe_setup_intent_id="seti_1",
        state="succeeded",
        created_at=NOW,
        updated_at=NOW,
    )
    return SavedPaymentMethod.objects.create(
        client=client,
        setup=setup,
        stripe_payment_method_id="pm_saved",
        brand="visa",
        last4="4242",
        exp_month=4,
        exp_year=2031,
        created_at=NOW,
    )


def use_scripted(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setattr(
        gateways,
        "get_gateway",
        lambda: StripeGateway(
            api_key="sk_test_x", webhook_secret="whsec_x", api_base=url, max_retries=0
        ),
    )


def test_stripe_s_402_authentication_required_leaves_the_intent_for_the_client(
    monkeypatch: pytest.MonkeyPatch, client_user: User, therapist: User
) -> None:
    """Stripe's own answer (not localstripe's) to an off-session charge that needs 3-D Secure:
    402 ``authentication_required`` with the intent, left ``requires_payment_method`` for the
    client to confirm with the saved card and 3-D Secure. It is not canceled."""
    saved_card_row(client_user)
    fee_request = late_cancelled_with_expired_authorization(client_user, therapist)
    declined = stripe_error("card_error", "authentication_required")
    declined["error"]["payment_intent"] = payment_intent_object(
        intent_id="pi_fee", status="requires_payment_method", amount=6000
    )
    with scripted_stripe(
        [Reply(200, {"id": "cus_1", "object": "customer"}), Reply(402, declined)]
    ) as server:
        use_scripted(monkeypatch, server.url)
        fee_request_process(fee_request_id=fee_request.pk, now=NOW)
        paths = [r.path for r in server.received]

    assert paths == ["/v1/customers", "/v1/payment_intents"]
    fee = Payment.objects.get(purpose="late_cancellation_fee")
    assert (fee.state, fee.last_error_code, fee.stripe_payment_intent_id) == (
        "requires_payment_method",
        "authentication_required",
        "pi_fee",
    )
    assert AuditEvent.objects.filter(action="billing.fee.authentication_required").count() == 1


def test_pay_13_an_expired_authorization_stripe_will_not_cancel_falls_back_to_the_saved_card(
    monkeypatch: pytest.MonkeyPatch, client_user: User, therapist: User
) -> None:
    """PAY-13: we still hold the session's payment as authorized (the ``canceled`` webhook was
    missed), the client cancels late, and Stripe refuses to cancel an intent it already canceled
    when the authorization expired. We read the intent (canceled), and the fee is charged
    off-session to the saved card instead."""
    saved_card_row(client_user)
    session = make_payment(
        client=client_user, therapist=therapist, now=NOW, state="requires_capture"
    )
    Booking.objects.filter(pk=session.booking_id).update(
        status=BookingStatus.CONFIRMED, hold_expires_at=None, **LATE
    )
    booking_cancel(booking_id=session.booking_id, by=client_user, reason="other", now=NOW)
    fee_request = FeeRequest.objects.get(booking_id=session.booking_id)
    intent_id = str(session.stripe_payment_intent_id)
    script = [
        Reply(400, stripe_error("invalid_request_error", "payment_intent_unexpected_state")),
        Reply(200, payment_intent_object(intent_id=intent_id, status="canceled")),
        Reply(200, {"id": "cus_1", "object": "customer"}),
        Reply(
            200,
            payment_intent_object(
                intent_id="pi_fee", status="succeeded", amount=6000, amount_received=6000
            ),
        ),
    ]
    with scripted_stripe(script) as server:
        use_scripted(monkeypatch, server.url)
        fee_request_process(fee_request_id=fee_request.pk, now=NOW)
        paths = [r.path for r in server.received]

    assert paths == [
        f"/v1/payment_intents/{intent_id}/cancel",
        f"/v1/payment_intents/{intent_id}",
        "/v1/customers",
        "/v1/payment_intents",
    ]
    session.refresh_from_db()
    assert session.state == "canceled"
    fee = Payment.objects.get(purpose="late_cancellation_fee")
    assert (fee.state, fee.amount_captured_minor) == ("succeeded", 6000)
    fee_request.refresh_from_db()
    assert fee_request.state == "settled"
