"""Therapist payouts through Stripe Connect (``BILLING_CONNECT_ENABLED``), separate charges and
transfers: the platform takes the client's payment; after the session is completed, the
therapist's share goes to their connected account with ``source_transaction`` (the charge) and a
``transfer_group``. The platform fee is an integer share in basis points, floored, and the
transfer is the rest, so fee + transfer is exactly what was paid: no rounding drift (PAY-14).

A refund after the payout — ours, or one made in the Stripe Dashboard that we learn of from
``charge.refunded`` — reverses the transfer by the refunded amount (up to what is left of it); a
dispute reverses what is left (PAY-15). The platform fee is not given back on a refund.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet

from api.errors import ConflictError, DomainError
from api.jobs import enqueue_after_commit
from audit.models import Outcome
from audit.services import audit_record
from billing.models import Payment, ProviderBilling, Transfer
from billing.services.payments import gateway_call
from scheduling.bookings.selectors import BookingStatus

logger = logging.getLogger("billing")
security_log = logging.getLogger("billing.security")

_PAYABLE = (Payment.State.SUCCEEDED, Payment.State.PARTIALLY_REFUNDED)


def platform_fee(amount_minor: int, *, bps: int) -> int:
    """The platform's share of ``amount_minor``: integers only, floored."""
    return amount_minor * bps // 10_000


def payouts_due() -> QuerySet[Payment]:
    """Collected session payments whose session is completed and not yet paid out (or held)."""
    return Payment.objects.filter(
        Q(transfer__isnull=True) | Q(transfer__state=Transfer.State.HELD),
        purpose=Payment.Purpose.SESSION,
        state__in=_PAYABLE,
        booking__status=BookingStatus.COMPLETED,
    ).order_by("created_at", "pk")


def payout_create(*, payment_id: uuid.UUID, now: datetime) -> Transfer | None:
    """Send the therapist's share of a completed session's payment (idempotent: one transfer
    per payment, with its own key). Held, with an alert, while their account cannot receive
    payouts; ``billing_settle`` tries again later."""
    if not settings.BILLING_CONNECT_ENABLED:
        return None
    with transaction.atomic():
        payment = Payment.objects.select_for_update().select_related("booking").get(pk=payment_id)
        if payment.purpose != Payment.Purpose.SESSION or payment.state not in _PAYABLE:
            return None
        if payment.booking.status != BookingStatus.COMPLETED:
            raise ConflictError("The session is not completed.", code="session_not_completed")
        transfer = Transfer.objects.filter(payment=payment).first()
        if transfer is not None and transfer.state != Transfer.State.HELD:
            return transfer
        net = payment.amount_captured_minor - payment.amount_refunded_minor
        fee = platform_fee(net, bps=settings.BILLING_PLATFORM_FEE_BPS)
        if net - fee <= 0:
            return None
        provider = ProviderBilling.objects.filter(user=payment.therapist).first()
        ready = provider is not None and provider.stripe_account_id and provider.payouts_enabled
        if transfer is None:
            transfer = Transfer(payment=payment, currency=payment.currency, created_at=now)
        transfer.amount_minor, transfer.fee_minor, transfer.updated_at = net - fee, fee, now
        if not ready:
            alert = transfer.pk is None
            transfer.state = Transfer.State.HELD
            transfer.save()
            if alert:
                security_log.warning("payout of payment %s held: account not ready", payment.pk)
                _audit(payment, "billing.payout.held", Outcome.ERROR, {"why": "payouts_disabled"})
            return transfer
        assert provider is not None
        destination = provider.stripe_account_id
        result = gateway_call(
            lambda gateway: gateway.transfer_create(
                idempotency_key=f"billing:transfer:{payment.pk}",
                amount=transfer.amount_minor,
                currency=payment.currency,
                destination=destination,
                transfer_group=f"payment_{payment.pk}",
                source_transaction=payment.stripe_charge_id,
                metadata={"payment_ref": str(payment.pk)},
            )
        )
        transfer.destination = destination
        transfer.stripe_transfer_id = result.id
        transfer.state = Transfer.State.SENT
        transfer.save()
        _audit(
            payment,
            "billing.payout.sent",
            Outcome.ALLOWED,
            {"amount_minor": transfer.amount_minor, "fee_minor": fee},
        )
    return transfer


def payout_reverse(*, payment: Payment, amount_minor: int, why: str, now: datetime) -> int:
    """Take back up to ``amount_minor`` of a LOCKED payment's sent transfer. Returns what was
    reversed. A failure is recorded and alerted, not raised: the refund or dispute that asked
    for it stands on its own, and the team settles the transfer by hand."""
    transfer = (
        Transfer.objects.select_for_update()
        .filter(payment=payment, state=Transfer.State.SENT)
        .first()
    )
    if transfer is None or not transfer.stripe_transfer_id:
        return 0
    amount = min(amount_minor, transfer.amount_minor - transfer.amount_reversed_minor)
    if amount <= 0:
        return 0
    transfer_id = transfer.stripe_transfer_id
    key = f"billing:transfer_reversal:{transfer.pk}:{transfer.reversals + 1}"
    try:
        gateway_call(
            lambda gateway: gateway.transfer_reverse(
                idempotency_key=key, transfer_id=transfer_id, amount=amount
            )
        )
    except DomainError:
        security_log.error("transfer reversal for payment %s failed (%s)", payment.pk, why)
        _audit(payment, "billing.payout.reversal_failed", Outcome.ERROR, {"why": why})
        return 0
    transfer.reversals += 1
    transfer.amount_reversed_minor += amount
    if transfer.amount_reversed_minor == transfer.amount_minor:
        transfer.state = Transfer.State.REVERSED
    transfer.updated_at = now
    transfer.save(update_fields=["reversals", "amount_reversed_minor", "state", "updated_at"])
    _audit(
        payment, "billing.payout.reversed", Outcome.ALLOWED, {"amount_minor": amount, "why": why}
    )
    return amount


def payout_reversal_due(*, payment: Payment, transfer: Transfer) -> int:
    """What is still to be taken back from a sent transfer: all of it once the payment is
    disputed; else what was refunded since the payout (by us or in the Dashboard: the transfer
    was the net after the refunds made before it), less what was reversed already."""
    if payment.disputed_at is not None:
        target = transfer.amount_minor
    else:
        refunded_before = payment.amount_captured_minor - transfer.amount_minor - transfer.fee_minor
        target = min(transfer.amount_minor, payment.amount_refunded_minor - refunded_before)
    return max(0, target - transfer.amount_reversed_minor)


def payout_reverse_due(*, payment_id: uuid.UUID, why: str, now: datetime) -> int:
    """Take back from a payment's sent transfer what its refunds or its dispute call for
    (``payout_reversal_due``). Safe to run twice, or after a newer event: it reverses only what
    is still due, decided under the payment's lock. Returns what was reversed."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        transfer = Transfer.objects.filter(payment=payment, state=Transfer.State.SENT).first()
        if transfer is None:
            return 0
        due = payout_reversal_due(payment=payment, transfer=transfer)
        if due <= 0:
            return 0
        return payout_reverse(payment=payment, amount_minor=due, why=why, now=now)


def payout_reverse_after_commit(*, payment_id: uuid.UUID, why: str) -> None:
    """Once the current transaction commits, a worker takes back what is due from the payment's
    transfer (the ``reverse_payout`` task): a webhook answers Stripe at once; the reversal is a
    call to Stripe of its own."""
    from billing.tasks import reverse_payout  # the task module imports this one

    enqueue_after_commit(reverse_payout, payment_id=str(payment_id), why=why)


def provider_account_update(*, account_id: str, payouts_enabled: bool, now: datetime) -> bool:
    """Stripe says whether a connected account can receive payouts (``account.updated``)."""
    return bool(
        ProviderBilling.objects.filter(stripe_account_id=account_id).update(
            payouts_enabled=payouts_enabled, updated_at=now
        )
    )


def _audit(payment: Payment, action: str, outcome: str, details: dict[str, object]) -> None:
    audit_record(
        action=action,
        actor_label="system",
        outcome=outcome,
        resource_type="billing.payment",
        resource_id=str(payment.pk),
        patient_id=payment.client_id,
        details=details,
    )
