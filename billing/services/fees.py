"""Fees charged off-session to the client's saved card (PAY-11, PAY-13).

Sessions are paid up front, so a late-cancellation or no-show fee is normally kept from the
session's payment (``lifecycle.fee_request_process``). When there is no collected payment to keep
it from — the authorization expired or was canceled before capture (PAY-13), or the session was
paid outside the platform — the fee is charged here: a PaymentIntent confirmed ``off_session``
with the client's default saved card, purpose ``late_cancellation_fee`` / ``no_show_fee``, and
the deterministic key ``billing:payment_intent:<booking>:<purpose>:<version>``; opaque ids only
(PAY-16).

An attempt that fails (declined, no saved card) is recorded as a ``failed`` payment with its
reason, shown in the client's payments, audited, alerted, and the client is emailed (no health
information). Its intent is canceled at Stripe so it can never be completed later; the next
attempt is the next version, with its own key. ``billing_settle`` makes at most
``BILLING_FEE_MAX_ATTEMPTS`` of them.

A charge the bank wants the client to authenticate (3-D Secure: Stripe's 402
``authentication_required``, or an intent left ``requires_action``) is Stripe's recommended
recovery instead: the intent is left as it is, the fee payment waits for the client (its state
the intent's, ``failure_code`` ``authentication_required``), the client is emailed to open the
app, which fetches the intent's ``client_secret`` (``fee_payment_authenticate``) and confirms it
with Stripe's SDK; ``payment_intent.succeeded`` then collects the fee. ``billing_settle`` does
not charge it again; it gives up (intent canceled, audited) once
``BILLING_FEE_RETRY_HOURS * BILLING_FEE_MAX_ATTEMPTS`` have passed (``fee_authentication_give_up``).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest

from api.errors import DomainError, NotFoundError
from api.models import User
from api.services.mail import mail_queue_to_user
from audit.models import Outcome
from audit.services import audit_access, audit_record
from billing import states
from billing.documents import money
from billing.errors import NotAwaitingAuthenticationError
from billing.gateways.base import CardDeclined, InvalidGatewayRequest, PaymentIntentResult
from billing.models import Payment
from billing.selectors import payment_method_default
from billing.services.payments import (
    customer_ensure,
    gateway_call,
    payment_apply_intent,
    payment_current_locked,
    payment_intent_attach,
    payment_intent_cancel_at_stripe,
    payment_intent_create_at_stripe,
    payment_transition,
)

if TYPE_CHECKING:
    from scheduling.models import Booking

logger = logging.getLogger("billing")
security_log = logging.getLogger("billing.security")

NO_SAVED_METHOD = "no_saved_payment_method"
AUTHENTICATION_REQUIRED = "authentication_required"


def fee_charge(
    *, booking: Booking, purpose: str, amount_minor: int, currency: str, now: datetime
) -> Payment:
    """One off-session attempt to collect a fee (idempotent: a payment of this version that
    already has an intent is re-read, never charged again). Returns the fee payment, which is
    collected (``succeeded``), still ``processing``, or ``failed`` with ``last_error_code``.
    Stripe unreachable → ``PaymentPendingError`` and nothing is kept: the same version and key
    are used next time."""
    customer_id = customer_ensure(user_id=booking.client_id, now=now)
    with transaction.atomic():
        payment = payment_current_locked(
            booking_id=booking.pk,
            client_id=booking.client_id,
            therapist_id=booking.therapist.user_id,
            purpose=purpose,
            amount_minor=amount_minor,
            currency=currency,
            now=now,
        )
        if payment.stripe_payment_intent_id:  # an earlier run reached Stripe: re-read
            intent_id = payment.stripe_payment_intent_id
            intent = gateway_call(lambda gateway: gateway.payment_intent_retrieve(intent_id))
            _settle_attempt(payment=payment, intent=intent, error_code="", now=now)
            return payment
        method = payment_method_default(client_id=booking.client_id)
        if method is None:
            _attempt_failed(payment=payment, code=NO_SAVED_METHOD, now=now)
            return payment
        error_code = ""
        try:
            intent = payment_intent_create_at_stripe(
                payment,
                customer_id=customer_id,
                payment_method_id=method.stripe_payment_method_id,
            )
        except CardDeclined as exc:
            # Stripe answers an off-session decline or 3-D Secure demand with a 402 whose body
            # holds the intent (left ``requires_payment_method``).
            error_code = exc.decline_code or exc.code
            if exc.payment_intent is None:
                _attempt_failed(payment=payment, code=error_code, now=now)
                return payment
            intent = exc.payment_intent
        payment_intent_attach(
            payment, intent=intent, customer_id=customer_id, off_session=True, now=now
        )
        _settle_attempt(payment=payment, intent=intent, error_code=error_code, now=now)
    return payment


def fee_attempts_failed(*, booking_id: uuid.UUID, purpose: str) -> int:
    """How many attempts to collect this fee ended without the money."""
    return Payment.objects.filter(
        booking_id=booking_id, purpose=purpose, state__in=states.ENDED
    ).count()


def _settle_attempt(
    *, payment: Payment, intent: PaymentIntentResult, error_code: str, now: datetime
) -> None:
    """Apply the intent. One that needs the client to authenticate waits for them; one that
    needs another card is a failed attempt (and is canceled at Stripe)."""
    if intent.status not in states.WAITING:
        payment_apply_intent(payment=payment, intent=intent, reason="off_session_charge", now=now)
        return
    code = error_code or intent.last_error_code
    if intent.status == Payment.State.REQUIRES_ACTION or code == AUTHENTICATION_REQUIRED:
        _await_client(payment=payment, intent=intent, now=now)
        return
    _intent_cancel_quietly(payment=payment)
    _attempt_failed(payment=payment, code=code or "card_declined", now=now)


def _await_client(*, payment: Payment, intent: PaymentIntentResult, now: datetime) -> None:
    """The bank wants the client to authenticate the charge: the intent is left for them to
    confirm in the app. The first time (not on a re-read) it is audited and the client emailed."""
    first = payment.state == Payment.State.CREATED
    payment_apply_intent(
        payment=payment,
        intent=replace(intent, last_error_code=AUTHENTICATION_REQUIRED),
        reason="off_session_authentication_required",
        now=now,
    )
    if not first:
        return
    audit_record(
        action="billing.fee.authentication_required",
        actor_label="system",
        resource_type="billing.payment",
        resource_id=str(payment.pk),
        patient_id=payment.client_id,
        details={"purpose": payment.purpose, "version": payment.version},
    )
    _ask_client_to_authenticate(client_id=payment.client_id, amount=_amount(payment), now=now)


@dataclass(frozen=True)
class FeeAuthentication:
    """What the app needs to let the client authenticate a fee with Stripe's SDK."""

    payment: Payment
    client_secret: str


def fee_payment_authenticate(
    *, payment_id: uuid.UUID, client: User, request: HttpRequest | None
) -> FeeAuthentication:
    """The client's app asks for the ``client_secret`` of their fee waiting for authentication,
    to confirm it with Stripe's SDK (3-D Secure). Someone else's or an unknown payment is 404
    (the caller's ``AuditedMixin`` records the denial); one that is not a fee waiting for the
    client, at Stripe as here, is 409."""
    with transaction.atomic():
        payment = (
            Payment.objects.select_for_update().filter(pk=payment_id, client_id=client.pk).first()
        )
        if payment is None:
            raise NotFoundError("No such payment.")
        intent_id = payment.stripe_payment_intent_id
        if (
            payment.purpose == Payment.Purpose.SESSION
            or payment.state not in states.WAITING
            or not intent_id
        ):
            raise NotAwaitingAuthenticationError("This payment is not waiting for you.")
        intent = gateway_call(lambda gateway: gateway.payment_intent_retrieve(intent_id))
        if intent.status not in states.WAITING:  # done meanwhile: its webhook says how
            raise NotAwaitingAuthenticationError("This payment is not waiting for you.")
        # From an AuditedMixin view (no actor) the event joins the request's batch.
        actor = None if request is not None else client
        audit_access(obj=payment, action="billing.payment.authenticate", actor=actor)
    return FeeAuthentication(payment=payment, client_secret=intent.client_secret)


def fee_authentication_give_up(*, payment_id: uuid.UUID, now: datetime) -> Payment:
    """The client did not authenticate a fee in time: its intent is canceled at Stripe (no
    one can complete it later) and the payment is ``failed``, audited. A fee collected
    meanwhile is left as it is (the caller sees its state)."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        if payment.state not in states.WAITING:
            return payment
        _intent_cancel_quietly(payment=payment)
        payment.last_error_code = AUTHENTICATION_REQUIRED
        payment_transition(
            payment=payment,
            to=Payment.State.FAILED,
            reason="authentication_not_completed",
            now=now,
        )
        security_log.warning("fee payment %s: the client did not authenticate it", payment.pk)
        audit_record(
            action="billing.fee.authentication_expired",
            actor_label="system",
            outcome=Outcome.ERROR,
            resource_type="billing.payment",
            resource_id=str(payment.pk),
            patient_id=payment.client_id,
            details={"purpose": payment.purpose, "version": payment.version},
        )
    return payment


def _intent_cancel_quietly(*, payment: Payment) -> None:
    """Cancel a failed fee attempt's intent at Stripe, so no one can complete it later. If
    Stripe cannot take it now, the intent stays incomplete and reconciliation shows it."""
    try:
        payment_intent_cancel_at_stripe(payment)
    except (DomainError, InvalidGatewayRequest):
        logger.warning("failed fee payment %s: its intent could not be canceled", payment.pk)


def _attempt_failed(*, payment: Payment, code: str, now: datetime) -> None:
    """Record a failed attempt: the payment, its history, the audit trail, an alert, and an
    email to the client (queued in the same transaction)."""
    payment.last_error_code = code[:64]
    payment_transition(
        payment=payment, to=Payment.State.FAILED, reason="off_session_failed", now=now
    )
    security_log.warning("fee payment %s could not be charged (%s)", payment.pk, code)
    audit_record(
        action="billing.fee.charge_failed",
        actor_label="system",
        outcome=Outcome.ERROR,
        resource_type="billing.payment",
        resource_id=str(payment.pk),
        patient_id=payment.client_id,
        details={"purpose": payment.purpose, "version": payment.version, "failure": code},
    )
    _tell_client(
        client_id=payment.client_id,
        amount=_amount(payment),
        code=code,
        again=payment.version < settings.BILLING_FEE_MAX_ATTEMPTS,
        now=now,
    )


def _tell_client(
    *, client_id: uuid.UUID, amount: str, code: str, again: bool, now: datetime
) -> None:
    ask = (
        "Please add a card in the app."
        if code == NO_SAVED_METHOD
        else "Please check your card or add another one in the app."
    )
    mail_queue_to_user(
        user_id=client_id,
        subject="We could not charge your card",
        body=(
            f"A fee of {amount} under your booking's cancellation terms could not be charged to "
            f"your saved card. {ask}" + (" We will try again." if again else "")
        ),
        now=now,
    )


def _ask_client_to_authenticate(*, client_id: uuid.UUID, amount: str, now: datetime) -> None:
    mail_queue_to_user(
        user_id=client_id,
        subject="Please confirm a payment in the app",
        body=(
            f"A fee of {amount} under your booking's cancellation terms needs your bank's "
            "confirmation before it can be charged to your saved card. Please open the app "
            "to confirm it."
        ),
        now=now,
    )


def _amount(payment: Payment) -> str:
    return money(payment.amount_minor, payment.currency)
