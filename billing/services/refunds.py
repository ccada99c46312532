"""Refunds: never more than was captured, never twice for one request.

The payment row is locked while a refund is decided and sent, so concurrent refund requests are
serialised and each sees the others' amounts (PAY-12). ``amount_refunded_minor`` counts every
refund we asked for that has not failed, so a pending refund already reserves its amount.
Each refund is named by ``(payment, sequence)``, and so is its Stripe idempotency key.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import transaction

from api.errors import ConflictError, NotFoundError, UnprocessableError
from audit.services import audit_record
from billing import states
from billing.models import Payment, Refund
from billing.services.payments import gateway_call, payment_transition
from billing.services.payouts import payout_reverse

_REFUND_STATE = {
    "succeeded": Refund.State.SUCCEEDED,
    "failed": Refund.State.FAILED,
    "canceled": Refund.State.CANCELED,
}


def refund_idempotency_key(*, payment_id: uuid.UUID, sequence: int) -> str:
    return f"billing:refund:{payment_id}:{sequence}"


def refund_create(
    *, payment_id: uuid.UUID, amount_minor: int, reason: str, now: datetime
) -> Refund:
    """Refund ``amount_minor`` of a collected payment now; refused locally when it would exceed
    what is left (Stripe doubles that do not check it, ours does). If Stripe cannot be reached,
    nothing is kept and the same request may be retried (it gets the same sequence and key)."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().filter(pk=payment_id).first()
        if payment is None:
            raise NotFoundError("No such payment.")
        refund = refund_request(payment=payment, amount_minor=amount_minor, reason=reason, now=now)
        return refund_submit(refund_id=refund.pk, now=now)


def refund_request(*, payment: Payment, amount_minor: int, reason: str, now: datetime) -> Refund:
    """Reserve a refund of a LOCKED payment: a pending row, counted in ``amount_refunded_minor``.
    ``refund_submit`` sends it (now, after commit, or from ``billing_settle`` if that failed)."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor <= 0:
        raise UnprocessableError("A refund must be a positive amount.", code="invalid_amount")
    if payment.state not in states.COLLECTED or not payment.stripe_payment_intent_id:
        raise ConflictError(
            "Only a collected payment can be refunded.",
            code="payment_not_collected",
            extra={"state": payment.state},
        )
    if amount_minor > payment.refundable_minor:
        raise UnprocessableError(
            "The refund is larger than what is left of the payment.",
            code="refund_exceeds_captured",
            extra={"refundable_minor": payment.refundable_minor},
        )
    last = payment.refunds.order_by("-sequence").values_list("sequence", flat=True).first()
    sequence = (last or 0) + 1
    refund = Refund.objects.create(
        payment=payment,
        sequence=sequence,
        amount_minor=amount_minor,
        reason=reason,
        idempotency_key=refund_idempotency_key(payment_id=payment.pk, sequence=sequence),
        created_at=now,
        updated_at=now,
    )
    payment.amount_refunded_minor += amount_minor
    audit_record(
        action="billing.refund.requested",
        actor_label="system",
        resource_type="billing.payment",
        resource_id=str(payment.pk),
        patient_id=payment.client_id,
        details={"refund": str(refund.pk), "amount_minor": amount_minor, "reason": reason},
    )
    target = states.state_of_amounts(
        captured=payment.amount_captured_minor, refunded=payment.amount_refunded_minor
    )
    if states.decide(payment.state, target) is states.Decision.APPLY:
        payment_transition(payment=payment, to=target, reason=f"refund_{reason}", now=now)
    else:
        payment.updated_at = now
        payment.save(update_fields=["amount_refunded_minor", "updated_at"])
    return refund


def refund_submit(*, refund_id: uuid.UUID, now: datetime) -> Refund:
    """Send a pending refund to Stripe with its own key (safe to run again: a refund Stripe
    already has is not sent twice, and Stripe answers a repeated key with the same refund)."""
    with transaction.atomic():
        payment_id = Refund.objects.values_list("payment_id", flat=True).get(pk=refund_id)
        payment = Payment.objects.select_for_update().get(pk=payment_id)  # payment, then refund
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        if refund.state != Refund.State.PENDING or refund.stripe_refund_id:
            return refund
        intent_id = str(payment.stripe_payment_intent_id)
        result = gateway_call(
            lambda gateway: gateway.refund_create(
                idempotency_key=refund.idempotency_key,
                payment_intent_id=intent_id,
                amount=refund.amount_minor,
                metadata={"payment_ref": str(payment.pk), "refund_ref": str(refund.pk)},
            )
        )
        refund.stripe_refund_id = result.id
        refund.updated_at = now
        refund.save(update_fields=["stripe_refund_id", "updated_at"])
        refund.payment = payment
        refund_apply_update(refund=refund, status=result.status, now=now)
        if refund.state in (Refund.State.PENDING, Refund.State.SUCCEEDED):
            payout_reverse(payment=payment, amount_minor=refund.amount_minor, why="refund", now=now)
    return refund


def refund_apply_update(
    *, refund: Refund, status: str, now: datetime, stripe_event_id: str = ""
) -> bool:
    """Apply a refund's new status from Stripe to a pending refund whose payment is locked.
    A refund that failed gives its reserved amount back. Returns whether anything changed."""
    new_state = _REFUND_STATE.get(status)
    if new_state is None or refund.state != Refund.State.PENDING:
        return False  # only a pending refund still changes; later news about it is stale
    payment = refund.payment
    refund.state = new_state
    refund.updated_at = now
    refund.save(update_fields=["state", "updated_at"])
    if new_state in (Refund.State.FAILED, Refund.State.CANCELED):
        payment.amount_refunded_minor -= refund.amount_minor
        payment.updated_at = now
        payment.save(update_fields=["amount_refunded_minor", "updated_at"])
        audit_record(
            action="billing.refund.failed",
            actor_label="system",
            resource_type="billing.payment",
            resource_id=str(payment.pk),
            patient_id=payment.client_id,
            details={"refund": str(refund.pk), "stripe_event": stripe_event_id},
        )
    return True
