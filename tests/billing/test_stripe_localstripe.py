"""Payments end to end over real HTTP: our gateway → localstripe → signed webhooks → our endpoint.

localstripe stands in for Stripe (a separate process, see stripe_doubles.py). What it cannot do
(idempotency keys, refund and dispute webhooks, current object shapes) is covered in
test_webhooks.py with signed payloads in Stripe's current shapes.
"""

from __future__ import annotations

import pytest

from api.models import User
from billing.models import Payment, PaymentEvent, StripeEvent
from tests.billing.conftest import client_sdk, start_payment
from tests.billing.stripe_doubles import LocalStripe, wait_until
from tests.clock import clock_instant

pytestmark = pytest.mark.integration

# Webhooks are applied at the real time: bookings must be held now, not on a fixed date.
NOW = clock_instant()  # the instant the views run at (tests/clock.py)


def _attach_and_confirm(localstripe: LocalStripe, intent_id: str, payment_method: str) -> None:
    sdk = client_sdk(localstripe)
    sdk.v1.payment_intents.update(intent_id, params={"payment_method": payment_method})
    sdk.v1.payment_intents.confirm(intent_id)


def test_pay_held_to_paid_to_confirmed_through_a_real_signed_webhook(
    stripe_e2e: LocalStripe, client_user: User, therapist: User
) -> None:
    started = start_payment(client=client_user, therapist=therapist, now=NOW)
    payment = started.payment
    assert payment.state == Payment.State.REQUIRES_PAYMENT_METHOD
    assert started.client_secret.startswith(f"{payment.stripe_payment_intent_id}_secret_")
    assert payment.stripe_customer_id.startswith("cus_")

    _attach_and_confirm(stripe_e2e, str(payment.stripe_payment_intent_id), "pm_card_visa")

    # The event's row gets its payment last, in the transaction that applies it.
    wait_until(lambda: StripeEvent.objects.filter(payment=payment).exists())
    payment.refresh_from_db()
    assert payment.state == Payment.State.SUCCEEDED
    assert payment.amount_captured_minor == 12000
    payment.booking.refresh_from_db()
    assert payment.booking.status == "confirmed"
    event = StripeEvent.objects.get(payment=payment)
    assert (event.type, event.outcome) == ("payment_intent.succeeded", "applied")
    assert list(
        PaymentEvent.objects.filter(payment=payment)
        .order_by("id")
        .values_list("from_state", "to_state", "stripe_event_id")
    ) == [
        ("created", "requires_payment_method", ""),
        ("requires_payment_method", "succeeded", event.event_id),
    ]


def test_pay_05_declined_card_leaves_the_payment_unpaid_with_the_reason(
    stripe_e2e: LocalStripe, client_user: User, therapist: User
) -> None:
    """PAY-05: localstripe declines at charge time with pm_card_chargeCustomerFail (its
    pm_card_visa_chargeDeclined only fails when attached to a customer)."""
    payment = start_payment(client=client_user, therapist=therapist, now=NOW).payment
    sdk = client_sdk(stripe_e2e)
    sdk.v1.payment_intents.update(
        str(payment.stripe_payment_intent_id),
        params={"payment_method": "pm_card_chargeCustomerFail"},
    )
    with pytest.raises(Exception) as declined:
        sdk.v1.payment_intents.confirm(str(payment.stripe_payment_intent_id))
    assert "declined" in str(declined.value)

    wait_until(lambda: StripeEvent.objects.filter(payment=payment).exists())
    payment.refresh_from_db()
    assert payment.state == Payment.State.REQUIRES_PAYMENT_METHOD
    assert payment.last_error_code == "card_declined"
    assert payment.amount_captured_minor == 0
    payment.booking.refresh_from_db()
    assert payment.booking.status == "cancelled"  # released: the slot is free again
    assert StripeEvent.objects.get(payment=payment).type == "payment_intent.payment_failed"
