"""Writes on payments: Stripe customers, PaymentIntents, and applying what Stripe tells us.

Every function takes ``now``. Stripe is called while the payment row is locked, so two requests
for the same payment (a double click, a retry racing the first try) can never create two intents,
even against a Stripe double that ignores idempotency keys; the key derived from
``(booking, purpose, version)`` covers the remaining case of a crash between Stripe's answer and
our commit.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest

from api.errors import ConflictError, NotFoundError, UnprocessableError
from api.models import User
from audit.services import audit_access, audit_record
from billing import gateways, states
from billing.errors import PaymentPendingError, PaymentsNotConfiguredError
from billing.gateways.base import (
    EphemeralKey,
    GatewayConfigurationError,
    GatewayUnavailable,
    IdempotencyKeyReused,
    InvalidGatewayRequest,
    PaymentGateway,
    PaymentIntentResult,
)
from billing.models import Payment, PaymentEvent, StripeCustomer
from scheduling.bookings.selectors import BookingStatus, booking_for_participant

logger = logging.getLogger("billing")
T = TypeVar("T")

# Stripe's own ceiling for one card payment in two-decimal currencies (999,999.99).
MAX_AMOUNT_MINOR = 99_999_999


@dataclass(frozen=True)
class PaymentStart:
    """What a client needs to confirm the payment with Stripe's SDK."""

    payment: Payment
    client_secret: str


@dataclass(frozen=True)
class PaymentSheet:
    """What Stripe's mobile PaymentSheet (and Stripe.js) needs to take a booking's payment:
    the intent and its client secret, the Stripe customer, an ephemeral key for that customer
    (only when the app named the API version its SDK speaks) and the publishable key. The two
    secrets are never logged."""

    payment: Payment
    client_secret: str
    payment_intent_id: str
    customer_id: str
    ephemeral_key: EphemeralKey | None
    publishable_key: str

    @property
    def ephemeral_key_secret(self) -> str | None:
        return self.ephemeral_key.secret if self.ephemeral_key is not None else None

    @property
    def ephemeral_key_expires_at(self) -> datetime | None:
        if self.ephemeral_key is None or not self.ephemeral_key.expires:
            return None
        return datetime.fromtimestamp(self.ephemeral_key.expires, tz=UTC)


def payment_intent_idempotency_key(payment: Payment) -> str:
    return f"billing:payment_intent:{payment.booking_id}:{payment.purpose}:{payment.version}"


def payment_intent_cancel_at_stripe(payment: Payment) -> PaymentIntentResult:
    """Ask Stripe to cancel the payment's intent (one key per payment: a retry is the same
    request). Raises what ``gateway_call`` raises; Stripe refusing an intent that can no longer
    be canceled is ``InvalidGatewayRequest``."""
    intent_id = str(payment.stripe_payment_intent_id)
    return gateway_call(
        lambda gateway: gateway.payment_intent_cancel(
            payment_intent_id=intent_id,
            idempotency_key=f"billing:payment_intent_cancel:{payment.pk}",
        )
    )


def payment_intent_create_at_stripe(
    payment: Payment, *, customer_id: str, payment_method_id: str | None = None
) -> PaymentIntentResult:
    """Create the payment's intent at Stripe, for the payment's own amount and currency, with
    the key of its version (a retry is the same request) and opaque metadata only. With
    ``payment_method_id`` it is confirmed at once, off-session, with that saved card. Raises
    what ``gateway_call`` raises (a decline or a 3-D Secure demand: ``CardDeclined``)."""
    return gateway_call(
        lambda gateway: gateway.payment_intent_create(
            idempotency_key=payment_intent_idempotency_key(payment),
            amount=payment.amount_minor,
            currency=payment.currency,
            customer_id=customer_id,
            metadata=payment_metadata(payment),
            payment_method_id=payment_method_id,
            off_session=payment_method_id is not None,
        )
    )


def payment_intent_attach(
    payment: Payment,
    *,
    intent: PaymentIntentResult,
    customer_id: str,
    off_session: bool = False,
    now: datetime,
) -> None:
    """Store the intent Stripe created for the (locked) payment, and record it (audited)."""
    payment.stripe_payment_intent_id = intent.id
    payment.stripe_customer_id = customer_id
    payment.updated_at = now
    payment.save(update_fields=["stripe_payment_intent_id", "stripe_customer_id", "updated_at"])
    details: dict[str, object] = {"purpose": payment.purpose, "version": payment.version}
    if off_session:
        details["off_session"] = True
    audit_record(
        action="billing.payment.intent_created",
        actor_label="system",
        resource_type="billing.payment",
        resource_id=str(payment.pk),
        patient_id=payment.client_id,
        details=details,
    )


def payment_metadata(payment: Payment) -> dict[str, str]:
    """Opaque ids only: Stripe signs no BAA, so nothing here may describe care (PAY-16)."""
    return {"payment_ref": str(payment.pk), "booking_ref": str(payment.booking_id)}


def customer_ensure(*, user_id: uuid.UUID, now: datetime) -> str:
    """The Stripe customer id of ``user_id``, created once (no name, email or other fields)."""
    existing = StripeCustomer.objects.filter(user_id=user_id).first()
    if existing is not None:
        return existing.stripe_customer_id
    result = gateway_call(
        lambda gateway: gateway.customer_create(
            idempotency_key=f"billing:customer:{user_id}", metadata={"user_ref": str(user_id)}
        )
    )
    try:
        with transaction.atomic():
            StripeCustomer.objects.create(
                user_id=user_id, stripe_customer_id=result.id, created_at=now
            )
    except IntegrityError:  # a concurrent request stored it first
        return StripeCustomer.objects.get(user_id=user_id).stripe_customer_id
    return result.id


def payment_intent_ensure(
    *,
    booking_id: uuid.UUID,
    client_id: uuid.UUID,
    therapist_id: uuid.UUID | None,
    purpose: str,
    amount_minor: int,
    currency: str,
    now: datetime,
) -> PaymentStart:
    """The live PaymentIntent of a booking's payment, created on the first call.

    The amount and currency come from the caller's own records (the booking's frozen terms),
    never from a client request. A second call returns the same intent (PAY-02).
    """
    _check_money(amount_minor, currency)
    with transaction.atomic():
        payment = payment_current_locked(
            booking_id=booking_id,
            client_id=client_id,
            therapist_id=therapist_id,
            purpose=purpose,
            amount_minor=amount_minor,
            currency=currency,
            now=now,
        )
        if payment.client_id != client_id:
            raise NotFoundError("No such booking.")
        if payment.state in states.COLLECTED or payment.state == Payment.State.REQUIRES_CAPTURE:
            raise ConflictError("This booking is already paid.", code="already_paid")
        if payment.stripe_payment_intent_id:
            intent = gateway_call(
                lambda gateway: gateway.payment_intent_retrieve(
                    str(payment.stripe_payment_intent_id)
                )
            )
        else:
            customer_id = customer_ensure(user_id=client_id, now=now)
            intent = payment_intent_create_at_stripe(payment, customer_id=customer_id)
            if intent.amount != payment.amount_minor or intent.currency != payment.currency:
                logger.error(
                    "payment intent terms differ from the payment's (payment %s)", payment.pk
                )
                raise ConflictError("The payment could not be started.", code="payment_mismatch")
            payment_intent_attach(payment, intent=intent, customer_id=customer_id, now=now)
        payment_apply_intent(payment=payment, intent=intent, reason="intent_synced", now=now)
    return PaymentStart(payment=payment, client_secret=intent.client_secret)


def booking_payment_start(
    *,
    booking_id: uuid.UUID,
    client: User,
    request: HttpRequest | None,
    now: datetime,
    stripe_version: str | None = None,
) -> PaymentSheet:
    """The client pays for their held booking: the price and currency are the booking's copied
    terms, never the request's (PAY-01). Someone else's booking is 404 (the caller's
    ``AuditedMixin`` records the denial); a booking that is not held, whose hold ran out, or
    that has started is 409 (PAY-04).

    With ``stripe_version`` (the API version of the app's Stripe SDK) an ephemeral key for the
    client's Stripe customer is made, so PaymentSheet can show and save their cards; a new one
    on every call (they are short-lived)."""
    booking = booking_for_participant(booking_id=booking_id, user=client)  # else 404
    if booking.client_id != client.pk:  # a therapist does not pay
        raise NotFoundError("No such booking.")
    if booking.status == BookingStatus.CONFIRMED:
        raise ConflictError("This booking is already paid.", code="already_paid")
    if booking.status != BookingStatus.HELD:
        raise ConflictError(
            "This booking cannot be paid.",
            code="booking_not_payable",
            extra={"current_status": booking.status},
        )
    if booking.hold_expires_at is None or booking.hold_expires_at <= now:
        raise ConflictError("The hold on this slot has expired.", code="hold_expired")
    if booking.start <= now:
        raise ConflictError("This session has already started.", code="booking_in_past")
    if booking.price_minor <= 0:
        raise ConflictError("This session has nothing to pay.", code="nothing_to_pay")
    publishable_key = settings.STRIPE_PUBLISHABLE_KEY
    if not publishable_key:  # the app could not use what it would get: start nothing
        logger.error("STRIPE_PUBLISHABLE_KEY is not configured")
        raise PaymentsNotConfiguredError()
    # The customer and the key first: Stripe refusing the version then leaves no intent behind.
    customer_id = customer_ensure(user_id=client.pk, now=now)
    ephemeral_key = None
    if stripe_version is not None:
        ephemeral_key = ephemeral_key_for(customer_id=customer_id, stripe_version=stripe_version)
    started = payment_intent_ensure(
        booking_id=booking.pk,
        client_id=client.pk,
        therapist_id=booking.therapist.user_id,
        purpose=Payment.Purpose.SESSION,
        amount_minor=booking.price_minor,
        currency=booking.currency,
        now=now,
    )
    # From an AuditedMixin view (no actor) the event joins the request's batch; a denial is
    # the view's 404.
    audit_access(
        obj=started.payment,
        action="billing.payment.start",
        actor=None if request is not None else client,
        details={"booking": str(booking.pk), "state": started.payment.state},
    )
    payment = started.payment
    return PaymentSheet(
        payment=payment,
        client_secret=started.client_secret,
        payment_intent_id=str(payment.stripe_payment_intent_id),
        customer_id=payment.stripe_customer_id or customer_id,
        ephemeral_key=ephemeral_key,
        publishable_key=publishable_key,
    )


def ephemeral_key_for(*, customer_id: str, stripe_version: str) -> EphemeralKey:
    """A new ephemeral key for the Stripe customer, in the mobile SDK's API version. Stripe
    refusing the version (one it does not know) is 422 ``stripe_version_refused``."""
    try:
        return gateway_call(
            lambda gateway: gateway.ephemeral_key_create(
                customer_id=customer_id, stripe_version=stripe_version
            )
        )
    except InvalidGatewayRequest as exc:
        logger.warning("stripe refused an ephemeral key: %s", exc.code)
        raise UnprocessableError(
            "Stripe refused this stripe_version.", code="stripe_version_refused"
        ) from exc


def payment_apply_intent(
    *,
    payment: Payment,
    intent: PaymentIntentResult,
    reason: str,
    now: datetime,
    stripe_event_id: str = "",
) -> states.Decision:
    """Move a locked payment to what ``intent`` says, if the state machine allows it.

    A contradiction (a collected intent for a payment we hold as canceled) is settled by asking
    Stripe for the intent as it is now (PAY-08).
    """
    try:
        target = states.state_of_intent(intent.status)
    except ValueError:
        logger.warning("unknown payment intent status for payment %s", payment.pk)
        return states.Decision.STALE
    decision = states.decide(payment.state, target)
    if decision is states.Decision.CONFLICT:
        intent = gateway_call(lambda gateway: gateway.payment_intent_retrieve(intent.id))
        target = states.state_of_intent(intent.status)
        reason = "reconciled_from_stripe"
        decision = states.Decision.APPLY if target != payment.state else states.Decision.STALE
    if intent.amount_received:
        payment.amount_captured_minor = max(payment.amount_captured_minor, intent.amount_received)
    if intent.latest_charge_id:
        payment.stripe_charge_id = intent.latest_charge_id
    if intent.last_error_code or target not in states.WAITING:
        # An intent still waiting with no new error keeps the reason we know it waits for
        # (a fee waiting for the client's 3-D Secure: ``authentication_required``).
        payment.last_error_code = intent.last_error_code[:64]
    if decision is states.Decision.APPLY:
        payment_transition(
            payment=payment, to=target, reason=reason, now=now, stripe_event_id=stripe_event_id
        )
    else:
        payment.updated_at = now
        payment.save(
            update_fields=[
                "amount_captured_minor",
                "stripe_charge_id",
                "last_error_code",
                "updated_at",
            ]
        )
    return decision


def payment_transition(
    *, payment: Payment, to: str, reason: str, now: datetime, stripe_event_id: str = ""
) -> None:
    """Record one state change of a locked payment: the row, its history, and the audit trail."""
    from_state = payment.state
    payment.state = to
    payment.updated_at = now
    payment.save(
        update_fields=[
            "state",
            "amount_captured_minor",
            "amount_refunded_minor",
            "stripe_charge_id",
            "last_error_code",
            "disputed_at",
            "updated_at",
        ]
    )
    PaymentEvent.objects.create(
        payment=payment,
        from_state=from_state,
        to_state=to,
        occurred_at=now,
        reason=reason,
        stripe_event_id=stripe_event_id,
    )
    audit_record(
        action="billing.payment.state_changed",
        actor_label="system",
        resource_type="billing.payment",
        resource_id=str(payment.pk),
        patient_id=payment.client_id,
        details={"from": from_state, "to": to, "reason": reason, "stripe_event": stripe_event_id},
    )
    # Imported here: the lifecycle module builds on this one (and on the booking services).
    from billing.services.lifecycle import payment_booking_follow

    payment_booking_follow(payment=payment, before=from_state, now=now)


def payment_current_locked(
    *,
    booking_id: uuid.UUID,
    client_id: uuid.UUID,
    therapist_id: uuid.UUID | None,
    purpose: str,
    amount_minor: int,
    currency: str,
    now: datetime,
) -> Payment:
    """The latest version of a booking's payment for ``purpose``, locked; a new version when
    there is none yet or the latest ended (canceled, or a failed fee charge). A concurrent
    creator makes us wait and reuse."""
    for _ in range(2):
        latest = (
            Payment.objects.select_for_update()
            .filter(booking_id=booking_id, purpose=purpose)
            .order_by("-version")
            .first()
        )
        if latest is not None and latest.state not in states.ENDED:
            return latest
        try:
            with transaction.atomic():
                return Payment.objects.create(
                    booking_id=booking_id,
                    purpose=purpose,
                    version=latest.version + 1 if latest is not None else 1,
                    client_id=client_id,
                    therapist_id=therapist_id,
                    amount_minor=amount_minor,
                    currency=currency,
                    created_at=now,
                    updated_at=now,
                )
        except IntegrityError:
            continue  # someone created this version meanwhile: lock and reuse theirs
    raise ConflictError("The payment is being started by another request; retry.")


def _check_money(amount_minor: int, currency: str) -> None:
    if (
        not isinstance(amount_minor, int)
        or isinstance(amount_minor, bool)
        or not 0 < amount_minor <= MAX_AMOUNT_MINOR
    ):
        raise UnprocessableError("The amount is not payable.", code="invalid_amount")
    if not (len(currency) == 3 and currency.isascii() and currency.isupper()):
        raise UnprocessableError("The currency is not an ISO 4217 code.", code="invalid_currency")


def gateway_call(call: Callable[[PaymentGateway], T]) -> T:
    """Run one gateway call; turn its failures into the domain's answers."""
    try:
        return call(gateways.get_gateway())
    except GatewayUnavailable as exc:
        logger.warning("stripe unavailable: %s", exc.code)
        raise PaymentPendingError(
            "The payment provider could not be reached. Nothing was charged twice; retry."
        ) from exc
    except IdempotencyKeyReused as exc:
        logger.error("stripe idempotency key reused with different parameters")
        raise ConflictError(
            "This payment was already started with different terms.",
            code="payment_terms_changed",
        ) from exc
    except GatewayConfigurationError as exc:
        logger.error("stripe is not configured or refused our key")
        raise PaymentsNotConfiguredError() from exc
