"""What a payment's changes do to its booking, and what a booking's cancellation asks of billing.

The booking side's contract (docs/bookings.md): ``booking_confirm`` / ``booking_release`` are
called in the transaction that applies the payment change (so a Stripe event confirms a booking
exactly once); cancellations leave a ``FeeRequest`` that ``fee_request_process`` settles.
Calls to Stripe that follow from a webhook (a refund) are reserved in that transaction and sent
by a task once it commits (``send_refund``); ``billing_settle`` sends whatever was left pending.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction

from api.errors import DomainError, NotFoundError
from api.jobs import enqueue_after_commit
from api.services.mail import mail_queue_to_user
from audit.models import Outcome
from audit.services import audit_record
from billing import states
from billing.documents import money
from billing.gateways.base import InvalidGatewayRequest
from billing.models import Payment, Refund, Transfer
from billing.services.fees import (
    fee_attempts_failed,
    fee_authentication_give_up,
    fee_charge,
)
from billing.services.methods import setup_card_save, setups_with_card_unsaved
from billing.services.payments import (
    gateway_call,
    payment_apply_intent,
    payment_intent_cancel_at_stripe,
)
from billing.services.payouts import payout_create, payouts_due
from billing.services.refunds import refund_request, refund_submit
from scheduling.bookings.selectors import (
    BookingStatus,
    FeeRequestKind,
    fee_request_to_process,
    fee_requests_pending,
)
from scheduling.bookings.services import (
    IllegalTransition,
    booking_confirm,
    booking_release,
    fee_request_claim,
    fee_request_defer,
    fee_request_settle,
)

if TYPE_CHECKING:
    from scheduling.models import FeeRequest

logger = logging.getLogger("billing")
security_log = logging.getLogger("billing.security")

_CANCELABLE = frozenset(
    {
        Payment.State.CREATED,
        Payment.State.REQUIRES_PAYMENT_METHOD,
        Payment.State.REQUIRES_CONFIRMATION,
        Payment.State.REQUIRES_ACTION,
        Payment.State.REQUIRES_CAPTURE,
    }
)


def payment_refresh(*, payment_id: uuid.UUID, now: datetime) -> Payment:
    """Read a payment's intent from Stripe and apply it (reconciliation, a missed webhook)."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().filter(pk=payment_id).first()
        if payment is None or not payment.stripe_payment_intent_id:
            raise NotFoundError("No such payment.")
        intent_id = payment.stripe_payment_intent_id
        intent = gateway_call(lambda gateway: gateway.payment_intent_retrieve(intent_id))
        payment_apply_intent(payment=payment, intent=intent, reason="refreshed", now=now)
    return payment


def payment_booking_follow(
    *, payment: Payment, before: str, now: datetime, failed: bool = False
) -> None:
    """Called on every change of a LOCKED payment (``payment_transition``): a session payment
    that became collected confirms its booking; one that was canceled, refunded in full before
    we saw it succeed, or failed (``failed``) releases it."""
    if payment.purpose != Payment.Purpose.SESSION or before in states.COLLECTED:
        return
    if payment.state in (Payment.State.SUCCEEDED, Payment.State.PARTIALLY_REFUNDED):
        _booking_paid(payment=payment, now=now)
    elif payment.state == Payment.State.CANCELED:
        _booking_release(payment=payment, reason="payment_canceled", now=now)
    elif payment.state == Payment.State.REFUNDED:
        _booking_release(payment=payment, reason="payment_refunded", now=now)
    elif failed:
        _booking_release(payment=payment, reason="payment_failed", now=now)


def _booking_paid(*, payment: Payment, now: datetime) -> None:
    try:
        with transaction.atomic():
            booking_confirm(booking_id=payment.booking_id, reason="payment_succeeded", now=now)
        return
    except IllegalTransition as exc:
        if exc.current_status == BookingStatus.CONFIRMED:
            return  # confirmed already (by an earlier event, or by the therapist)
    # Paid after the hold ran out or the booking went: give the money back and say so.
    _booking_release(payment=payment, reason="paid_after_hold", now=now)
    refund = refund_request(
        payment=payment,
        amount_minor=payment.refundable_minor,
        reason=Refund.Reason.SLOT_LOST,
        now=now,
    )
    audit_record(
        action="billing.payment.slot_lost",
        actor_label="system",
        resource_type="billing.payment",
        resource_id=str(payment.pk),
        patient_id=payment.client_id,
        details={"booking": str(payment.booking_id), "refund": str(refund.pk)},
    )
    # The refund is owed from this commit on (billing_settle sends it if Stripe is down now),
    # so the client is told in the same transaction, with no health information.
    mail_queue_to_user(
        user_id=payment.client_id,
        subject="Your payment is being refunded",
        body=(
            "The time you chose was no longer available when your payment arrived, so "
            f"{money(refund.amount_minor, payment.currency)} is being refunded to your card. "
            "Please choose another time."
        ),
        now=now,
    )
    from billing.tasks import send_refund  # the task module imports this one

    enqueue_after_commit(send_refund, refund_id=str(refund.pk))


def _booking_release(*, payment: Payment, reason: str, now: datetime) -> None:
    try:
        with transaction.atomic():
            booking_release(booking_id=payment.booking_id, reason=reason, now=now)
    except IllegalTransition as exc:
        if exc.current_status != BookingStatus.CONFIRMED:
            return  # cancelled already, or over
        # A confirmed session whose money is gone (an authorization that expired before
        # capture, PAY-13): it stays booked, marked unpaid for the team to follow up.
        security_log.warning("confirmed booking of payment %s is unpaid (%s)", payment.pk, reason)
        audit_record(
            action="billing.payment.uncollected",
            actor_label="system",
            outcome=Outcome.ERROR,
            resource_type="billing.payment",
            resource_id=str(payment.pk),
            patient_id=payment.client_id,
            details={"booking": str(payment.booking_id), "why": reason},
        )


# --- Fee requests (what a cancellation asks of billing) --------------------------------------


_FEE_PURPOSE = {
    FeeRequestKind.LATE_CANCELLATION_FEE: Payment.Purpose.LATE_CANCELLATION_FEE,
    FeeRequestKind.NO_SHOW_FEE: Payment.Purpose.NO_SHOW_FEE,
}


def fee_request_process(*, fee_request_id: uuid.UUID, now: datetime) -> bool:
    """Do what one cancellation or no-show asked: refund all, or all but the fee (kept from the
    session's payment), or cancel an intent not yet paid; then mark the request settled. A fee
    that cannot be kept from a collected payment (none was collected: an authorization that
    expired, PAY-13, or a session paid outside) is charged off-session to the client's saved card
    (``fees.fee_charge``), and the request stays pending until that succeeds or the attempts are
    used up. True when the request is settled by this call; False when another worker holds
    it, or it waits (a payment still processing, a fee put off until its next attempt or
    waiting for the client to authenticate it)."""
    if not fee_request_claim(fee_request_id=fee_request_id, now=now):
        return False
    fee_request = fee_request_to_process(fee_request_id=fee_request_id)
    purpose = _FEE_PURPOSE.get(FeeRequestKind(fee_request.kind))
    charge_fee = False
    refund_id = None
    with transaction.atomic():  # the money decision and "settled" commit together
        payment = (
            Payment.objects.select_for_update()
            .filter(booking_id=fee_request.booking_id, purpose=Payment.Purpose.SESSION)
            .order_by("-version")
            .first()
        )
        if payment is not None and payment.state == Payment.State.PROCESSING:
            return False  # not known yet whether it was paid: the claim runs out, retried then
        if payment is not None and payment.state in states.COLLECTED:
            wanted = payment.refundable_minor if purpose is None else fee_request.refund_minor
            amount = min(wanted, payment.refundable_minor)
            if amount > 0:
                refund_id = refund_request(
                    payment=payment, amount_minor=amount, reason=fee_request.reason, now=now
                ).pk
        else:
            if payment is not None and payment.state in _CANCELABLE:
                _intent_cancel(payment=payment, now=now)
            charge_fee = purpose is not None and fee_request.fee_minor > 0
        if not charge_fee:
            fee_request_settle(fee_request_id=fee_request_id, now=now)
    if refund_id is not None:
        _refund_send(refund_id=refund_id, now=now)
    if charge_fee:
        assert purpose is not None
        return _fee_collect(fee_request=fee_request, purpose=purpose, now=now)
    return True


def _fee_collect(*, fee_request: FeeRequest, purpose: str, now: datetime) -> bool:
    """One off-session attempt at the fee; settled when collected or when the last attempt
    failed (audited and alerted as uncollected), else tried again after
    ``BILLING_FEE_RETRY_HOURS``. A fee waiting for the client to authenticate it is not charged
    again: it is re-read, and given up (uncollected) after
    ``BILLING_FEE_RETRY_HOURS * BILLING_FEE_MAX_ATTEMPTS``. Whether the request is settled."""
    fee = fee_charge(
        booking=fee_request.booking,
        purpose=purpose,
        amount_minor=fee_request.fee_minor,
        currency=fee_request.currency,
        now=now,
    )
    if fee.state == Payment.State.PROCESSING:
        return False  # its webhook will tell; the claim runs out and the next run re-reads it
    retry = timedelta(hours=settings.BILLING_FEE_RETRY_HOURS)
    why = "attempts_exhausted"
    if fee.state in states.WAITING:
        expires = fee.created_at + retry * settings.BILLING_FEE_MAX_ATTEMPTS
        if now < expires:
            fee_request_defer(fee_request_id=fee_request.pk, until=min(now + retry, expires))
            return False
        fee = fee_authentication_give_up(payment_id=fee.pk, now=now)
        why = "authentication_not_completed"
    failed = fee_attempts_failed(booking_id=fee_request.booking_id, purpose=purpose)
    if (
        fee.state in states.ENDED
        and why == "attempts_exhausted"
        and failed < settings.BILLING_FEE_MAX_ATTEMPTS
    ):
        fee_request_defer(fee_request_id=fee_request.pk, until=now + retry)
        return False
    with transaction.atomic():
        if fee.state in states.ENDED:
            security_log.warning("fee of payment %s given up (%s)", fee.pk, why)
            audit_record(
                action="billing.fee.uncollected",
                actor_label="system",
                outcome=Outcome.ERROR,
                resource_type="billing.payment",
                resource_id=str(fee.pk),
                patient_id=fee.client_id,
                details={"fee_minor": fee_request.fee_minor, "why": why, "attempts": failed},
            )
        fee_request_settle(fee_request_id=fee_request.pk, now=now)
    return True


def _refund_send(*, refund_id: uuid.UUID, now: datetime) -> Refund | None:
    """Send a reserved refund; if Stripe cannot take it now it stays pending for
    ``billing_settle``, which sends it with the same key."""
    try:
        return refund_submit(refund_id=refund_id, now=now)
    except DomainError:
        logger.warning("refund %s left pending for billing_settle", refund_id)
        return None


def _intent_cancel(*, payment: Payment, now: datetime) -> None:
    intent_id = payment.stripe_payment_intent_id
    if not intent_id:
        return
    try:
        intent = payment_intent_cancel_at_stripe(payment)
    except InvalidGatewayRequest:
        # Stripe refuses to cancel an intent that is no longer cancelable: an authorization
        # that expired (Stripe canceled it, PAY-13) or one that was paid meanwhile. Its status
        # at Stripe is the truth.
        intent = gateway_call(lambda gateway: gateway.payment_intent_retrieve(str(intent_id)))
    payment_apply_intent(payment=payment, intent=intent, reason="booking_cancelled", now=now)


def billing_settle(*, now: datetime, limit: int = 100) -> dict[str, int]:
    """One pass of the background work: settle pending fee requests, send refunds that were
    reserved but never reached Stripe and save cards whose setup succeeded but whose task never
    ran (both older than a minute, so none is being handled right now), and, with Connect on,
    pay therapists for completed sessions."""
    settled = 0
    for fee_request in list(fee_requests_pending(limit=limit, now=now)):
        try:
            settled += fee_request_process(fee_request_id=fee_request.pk, now=now)
        except Exception:
            logger.exception("fee request %s not settled; retried next run", fee_request.pk)
    sent = 0
    stuck = Refund.objects.filter(
        state=Refund.State.PENDING,
        stripe_refund_id=None,
        created_at__lte=now - timedelta(minutes=1),
    ).values_list("pk", flat=True)[:limit]
    for refund_id in list(stuck):
        try:
            refund_submit(refund_id=refund_id, now=now)
            sent += 1
        except Exception:
            logger.exception("refund %s not sent; retried next run", refund_id)
    cards = 0
    for setup_id in list(
        setups_with_card_unsaved(before=now - timedelta(minutes=1)).values_list("pk", flat=True)[
            :limit
        ]
    ):
        try:
            cards += setup_card_save(setup_id=setup_id, now=now)
        except Exception:
            logger.exception("card of setup %s not saved; retried next run", setup_id)
    paid_out = 0
    if settings.BILLING_CONNECT_ENABLED:
        for payment_id in list(payouts_due().values_list("pk", flat=True)[:limit]):
            try:
                transfer = payout_create(payment_id=payment_id, now=now)
                paid_out += transfer is not None and transfer.state == Transfer.State.SENT
            except Exception:
                logger.exception("payout of payment %s not sent; retried next run", payment_id)
    return {
        "fee_requests_settled": settled,
        "refunds_sent": sent,
        "cards_saved": cards,
        "payouts_sent": paid_out,
    }
