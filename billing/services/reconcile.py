"""Reconciliation: our payments against Stripe's intents for a period (Stripe is the truth)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from billing import states
from billing.gateways.base import InvalidGatewayRequest, PaymentIntentResult
from billing.models import Payment
from billing.selectors import payments_created_between
from billing.services.lifecycle import payment_refresh
from billing.services.payments import gateway_call

# Stripe's clock and ours differ by the time a request takes: look a little wider at Stripe.
_SLACK_SECONDS = 3600


@dataclass(frozen=True)
class Mismatch:
    kind: str  # "state", "amount", "missing_at_stripe", "unknown_to_us"
    payment_id: str
    intent_id: str
    ours: str
    stripe: str

    def line(self) -> str:
        return (
            f"{self.kind} payment={self.payment_id or '-'} intent={self.intent_id} "
            f"ours={self.ours or '-'} stripe={self.stripe or '-'}"
        )


def _agrees(payment: Payment, intent: PaymentIntentResult) -> str | None:
    """Why ``payment`` and ``intent`` disagree, or None."""
    collected = payment.state in states.COLLECTED
    # A failed fee charge is ours: its intent was canceled at Stripe so it cannot succeed later.
    ours = Payment.State.CANCELED if payment.state == Payment.State.FAILED else payment.state
    if collected != (intent.status == "succeeded") or (not collected and ours != intent.status):
        return "state"
    if (
        intent.amount != payment.amount_minor
        or intent.currency != payment.currency
        or intent.amount_received != payment.amount_captured_minor
    ):
        return "amount"
    return None


def _retrieve(intent_id: str) -> PaymentIntentResult | None:
    try:
        return gateway_call(lambda gateway: gateway.payment_intent_retrieve(intent_id))
    except InvalidGatewayRequest as exc:
        if exc.http_status == 404:
            return None
        raise


def _describe(payment: Payment) -> str:
    return f"{payment.state}/{payment.amount_captured_minor}/{payment.amount_minor}"


def _describe_intent(intent: PaymentIntentResult) -> str:
    return f"{intent.status}/{intent.amount_received}/{intent.amount}"


def payments_reconcile(
    *, start: datetime, end: datetime, fix: bool, now: datetime
) -> list[Mismatch]:
    """Compare every payment created in ``[start, end)`` with its intent at Stripe, and every
    intent Stripe created then with our payments. With ``fix``, a payment whose state or amounts
    differ is brought to what Stripe says (through the same monotonic state machine)."""
    found: list[Mismatch] = []
    stripe_intents = {
        intent.id: intent
        for intent in gateway_call(
            lambda gateway: list(
                gateway.payment_intents_created_between(
                    start=int(start.timestamp()) - _SLACK_SECONDS,
                    end=int(end.timestamp()) + _SLACK_SECONDS,
                )
            )
        )
    }
    ours: set[str] = set()
    for payment in payments_created_between(start=start, end=end).iterator(chunk_size=500):
        intent_id = str(payment.stripe_payment_intent_id)
        ours.add(intent_id)
        intent = stripe_intents.get(intent_id) or _retrieve(intent_id)
        if intent is None:
            found.append(
                Mismatch("missing_at_stripe", str(payment.pk), intent_id, _describe(payment), "")
            )
            continue
        why = _agrees(payment, intent)
        if why is None:
            continue
        found.append(
            Mismatch(why, str(payment.pk), intent_id, _describe(payment), _describe_intent(intent))
        )
        if fix:
            payment_refresh(payment_id=payment.pk, now=now)
    for intent_id, intent in stripe_intents.items():
        if (
            intent_id not in ours
            and not Payment.objects.filter(stripe_payment_intent_id=intent_id).exists()
        ):
            found.append(Mismatch("unknown_to_us", "", intent_id, "", _describe_intent(intent)))
    return found
