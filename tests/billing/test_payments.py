"""Starting a payment: one intent per (booking, purpose, version), whatever the retries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from api.errors import ConflictError, NotFoundError, UnprocessableError
from api.models import User
from billing.errors import PaymentPendingError
from billing.models import Payment, PaymentEvent, StripeCustomer
from tests.billing.conftest import (
    WireRequest,
    booking_for,
    client_sdk,
    make_payment,
    start_payment,
    use_gateway,
)
from tests.billing.stripe_doubles import (
    LocalStripe,
    Reply,
    free_port,
    payment_intent_object,
    scripted_stripe,
    stripe_error,
)
from tests.concurrency import run_at_once

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def intent_creates(wire: list[WireRequest]) -> list[WireRequest]:
    return [r for r in wire if r.method == "post" and r.url.endswith("/v1/payment_intents")]


@pytest.mark.integration
def test_pay_02_a_second_request_returns_the_same_intent(
    localstripe: LocalStripe, client_user: User, therapist: User, stripe_wire: list[WireRequest]
) -> None:
    """PAY-02: a second start for one booking → the same payment and intent, one deterministic
    key."""
    booking = booking_for(client=client_user, therapist=therapist, now=NOW)
    first = start_payment(client=client_user, therapist=therapist, now=NOW, booking=booking)
    second = start_payment(client=client_user, therapist=therapist, now=NOW, booking=booking)
    assert second.payment.pk == first.payment.pk
    assert second.client_secret == first.client_secret
    assert Payment.objects.filter(booking=booking).count() == 1
    creates = intent_creates(stripe_wire)
    assert [r.idempotency_key for r in creates] == [
        f"billing:payment_intent:{booking.pk}:session:1"
    ]
    assert StripeCustomer.objects.get(user=client_user).stripe_customer_id.startswith("cus_")


@pytest.mark.integration
@pytest.mark.postgres
def test_pay_02_simultaneous_requests_create_one_intent(
    localstripe: LocalStripe,
    transactional_db: None,
    client_user: User,
    therapist: User,
    stripe_wire: list[WireRequest],
) -> None:
    """PAY-02: six simultaneous "pay" calls for one booking, each on its own connection: one
    row, one intent at Stripe (even though localstripe would happily create six), one client
    secret."""
    booking = booking_for(client=client_user, therapist=therapist, now=NOW)

    def pay(_: int) -> str:
        started = start_payment(client=client_user, therapist=therapist, now=NOW, booking=booking)
        return started.client_secret

    secrets = run_at_once(pay, 6, timeout=60)
    assert all(isinstance(secret, str) for secret in secrets), secrets
    assert len(set(secrets)) == 1
    assert Payment.objects.filter(booking=booking).count() == 1
    assert len(intent_creates(stripe_wire)) == 1


def test_pay_17_stripe_down_gives_a_retryable_error_and_writes_nothing(
    monkeypatch: pytest.MonkeyPatch, client_user: User, therapist: User
) -> None:
    sleeps: list[float] = []
    use_gateway(monkeypatch, f"http://127.0.0.1:{free_port()}", max_retries=2, sleeps=sleeps)
    with pytest.raises(PaymentPendingError) as pending:
        start_payment(client=client_user, therapist=therapist, now=NOW)
    assert (pending.value.status_code, pending.value.code) == (503, "payment_pending")
    assert sleeps == [0.5, 1.0]
    assert Payment.objects.count() == 0
    assert StripeCustomer.objects.count() == 0


def test_pay_03_a_timed_out_create_is_retried_later_with_the_same_key(
    monkeypatch: pytest.MonkeyPatch, client_user: User, therapist: User
) -> None:
    """PAY-03/PAY-17: the intent create times out on every try; the caller gets 503 and nothing
    is stored. The user's retry sends the very same key, so Stripe would answer with the intent
    it may already have made, and exactly one payment row exists in the end."""
    booking = booking_for(client=client_user, therapist=therapist, now=NOW)
    customer = {"id": "cus_1", "object": "customer"}
    intent = payment_intent_object(intent_id="pi_1", status="requires_payment_method")
    sleeps: list[float] = []
    with scripted_stripe([Reply(200, customer), Reply(hang=True)]) as down:
        use_gateway(monkeypatch, down.url, max_retries=2, sleeps=sleeps)
        with pytest.raises(PaymentPendingError):
            start_payment(client=client_user, therapist=therapist, now=NOW, booking=booking)
        first_keys = [r.idempotency_key for r in down.received if r.path == "/v1/payment_intents"]
    assert Payment.objects.count() == 0

    with scripted_stripe([Reply(200, customer), Reply(200, intent)]) as up:
        use_gateway(monkeypatch, up.url, max_retries=2, sleeps=sleeps)
        started = start_payment(client=client_user, therapist=therapist, now=NOW, booking=booking)
        second_keys = [r.idempotency_key for r in up.received if r.path == "/v1/payment_intents"]
    key = f"billing:payment_intent:{booking.pk}:session:1"
    assert first_keys == [key, key, key]
    assert second_keys == [key]
    assert started.payment.stripe_payment_intent_id == "pi_1"
    assert Payment.objects.count() == 1
    assert PaymentEvent.objects.count() == 1


def test_pay_03_a_key_reused_with_other_terms_is_a_conflict(
    monkeypatch: pytest.MonkeyPatch, client_user: User, therapist: User
) -> None:
    customer = {"id": "cus_1", "object": "customer"}
    reused = stripe_error("idempotency_error", "idempotency_key_in_use")
    with scripted_stripe([Reply(200, customer), Reply(400, reused)]) as server:
        use_gateway(monkeypatch, server.url, max_retries=2, sleeps=[])
        with pytest.raises(ConflictError) as conflict:
            start_payment(client=client_user, therapist=therapist, now=NOW)
    assert conflict.value.code == "payment_terms_changed"
    assert Payment.objects.count() == 0


def test_an_intent_with_other_terms_than_ours_is_refused(
    monkeypatch: pytest.MonkeyPatch, client_user: User, therapist: User
) -> None:
    customer = {"id": "cus_1", "object": "customer"}
    other = payment_intent_object(intent_id="pi_1", status="requires_payment_method", amount=1)
    with scripted_stripe([Reply(200, customer), Reply(200, other)]) as server:
        use_gateway(monkeypatch, server.url, max_retries=2, sleeps=[])
        with pytest.raises(ConflictError):
            start_payment(client=client_user, therapist=therapist, now=NOW)
    assert Payment.objects.count() == 0


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        (0, "USD"),
        (-100, "USD"),
        (12.5, "USD"),
        (True, "USD"),
        (100_000_000, "USD"),
        (1000, "usd"),
        (1000, "US"),
        (1000, "USDX"),
        (1000, "€UR"),
    ],
)
def test_pay_01_amounts_and_currencies_that_cannot_be_paid_are_refused(
    client_user: User, therapist: User, amount: Any, currency: str, stripe_wire: list
) -> None:
    """PAY-01: the service refuses zero, negative, fractional, boolean or huge amounts and
    non-ISO currencies before Stripe is called."""
    with pytest.raises(UnprocessableError):
        start_payment(
            client=client_user, therapist=therapist, now=NOW, amount_minor=amount, currency=currency
        )
    assert Payment.objects.count() == 0
    assert stripe_wire == []


def test_pay_04_someone_elses_booking_payment_is_not_found(
    client_user: User, outsider: User, therapist: User, stripe_wire: list
) -> None:
    """PAY-04: starting a payment on someone else's booking → not found, nothing sent."""
    theirs = make_payment(client=client_user, therapist=therapist, now=NOW)
    with pytest.raises(NotFoundError):
        start_payment(client=outsider, therapist=therapist, now=NOW, booking=theirs.booking)
    assert stripe_wire == []


def test_pay_04_a_paid_booking_cannot_be_paid_again(
    client_user: User, therapist: User, stripe_wire: list
) -> None:
    """PAY-04: a booking already paid → 409 already_paid."""
    paid = make_payment(
        client=client_user, therapist=therapist, now=NOW, state="succeeded", captured_minor=12000
    )
    with pytest.raises(ConflictError) as conflict:
        start_payment(client=client_user, therapist=therapist, now=NOW, booking=paid.booking)
    assert conflict.value.code == "already_paid"
    assert stripe_wire == []


@pytest.mark.integration
def test_a_canceled_intent_makes_the_next_attempt_a_new_version(
    localstripe: LocalStripe, client_user: User, therapist: User, stripe_wire: list
) -> None:
    booking = booking_for(client=client_user, therapist=therapist, now=NOW)
    first = start_payment(client=client_user, therapist=therapist, now=NOW, booking=booking)
    Payment.objects.filter(pk=first.payment.pk).update(state="canceled")
    second = start_payment(client=client_user, therapist=therapist, now=NOW, booking=booking)
    assert second.payment.version == 2
    assert second.payment.stripe_payment_intent_id != first.payment.stripe_payment_intent_id
    assert [r.idempotency_key for r in intent_creates(stripe_wire)] == [
        f"billing:payment_intent:{booking.pk}:session:1",
        f"billing:payment_intent:{booking.pk}:session:2",
    ]


@pytest.mark.integration
def test_pay_05_3ds_gives_the_client_secret_and_a_failed_3ds_asks_for_a_new_card(
    localstripe: LocalStripe, client_user: User, therapist: User
) -> None:
    booking = booking_for(client=client_user, therapist=therapist, now=NOW)
    started = start_payment(client=client_user, therapist=therapist, now=NOW, booking=booking)
    intent_id = str(started.payment.stripe_payment_intent_id)
    sdk = client_sdk(localstripe)
    card = sdk.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": "4000002500003155", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        }
    )
    sdk.v1.payment_intents.update(intent_id, params={"payment_method": card.id})
    sdk.v1.payment_intents.confirm(intent_id)

    again = start_payment(client=client_user, therapist=therapist, now=NOW, booking=booking)
    assert again.payment.state == "requires_action"
    assert again.client_secret == started.client_secret

    sdk.raw_request(
        "post",
        f"/v1/payment_intents/{intent_id}/_authenticate",
        client_secret=started.client_secret,
        success="false",
    )
    failed = start_payment(client=client_user, therapist=therapist, now=NOW, booking=booking)
    assert failed.payment.state == "requires_payment_method"
    assert list(failed.payment.history.order_by("id").values_list("to_state", flat=True)) == [
        "requires_payment_method",
        "requires_action",
        "requires_payment_method",
    ]
