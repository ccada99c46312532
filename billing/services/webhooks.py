"""Stripe webhook events: verified, recorded, and applied exactly once.

``webhook_receive`` verifies the signature over the raw bytes (the gateway uses Stripe's own
check), then, in ONE transaction, inserts the event's id into ``StripeEvent`` (unique) and applies
its effect. A duplicate delivery, sequential or concurrent, fails that insert and changes nothing
(PAY-07). Which payment an event concerns is decided by OUR stored intent id, never by the
event's metadata (PAY-09). Events of the other mode (test vs live) are recorded and ignored
(PAY-10).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from django.conf import settings
from django.db import IntegrityError, transaction

from audit.models import Outcome
from audit.services import audit_record
from billing import gateways, states
from billing.errors import WebhookRejectedError, WebhooksNotConfiguredError
from billing.gateways.base import WebhookEvent, WebhookPayloadInvalid, WebhookSignatureInvalid
from billing.models import (
    Payment,
    PaymentMethodSetup,
    Refund,
    SavedPaymentMethod,
    StripeEvent,
)
from billing.services.lifecycle import payment_booking_follow
from billing.services.methods import payment_method_detached_at_stripe, setup_apply_intent
from billing.services.payments import payment_apply_intent, payment_transition
from billing.services.payouts import payout_reverse_after_commit, provider_account_update
from billing.services.refunds import refund_apply_update

security_log = logging.getLogger("billing.security")

_INTENT_EVENTS = frozenset(
    {
        "payment_intent.created",
        "payment_intent.requires_action",
        "payment_intent.processing",
        "payment_intent.amount_capturable_updated",
        "payment_intent.payment_failed",
        "payment_intent.canceled",
        "payment_intent.succeeded",
    }
)
_REFUND_EVENTS = frozenset({"refund.updated", "refund.failed", "charge.refund.updated"})
_SETUP_EVENTS = frozenset(
    {
        "setup_intent.succeeded",
        "setup_intent.setup_failed",
        "setup_intent.requires_action",
        "setup_intent.canceled",
    }
)


def webhook_receive(*, payload: bytes, signature_header: str, now: datetime) -> StripeEvent | None:
    """Verify and apply one delivery. Returns the recorded event, or None for a duplicate."""
    if not settings.STRIPE_WEBHOOK_SECRET.strip():
        security_log.error("stripe webhook refused: no endpoint secret is configured")
        raise WebhooksNotConfiguredError("Webhooks are not configured.")
    try:
        event = gateways.get_gateway().webhook_event_verify(
            payload=payload, signature_header=signature_header
        )
    except (WebhookSignatureInvalid, WebhookPayloadInvalid) as exc:
        security_log.warning("stripe webhook rejected: %s", type(exc).__name__)
        audit_record(
            action="billing.webhook.rejected",
            actor_label="anonymous",
            outcome=Outcome.DENIED,
            resource_type="stripe_event",
            details={"why": type(exc).__name__},
        )
        raise WebhookRejectedError("The webhook could not be verified.") from exc

    with transaction.atomic():
        try:
            with transaction.atomic():
                record = StripeEvent.objects.create(
                    event_id=event.id,
                    type=event.type[:128],
                    livemode=event.livemode,
                    object_id=str(event.object.get("id", ""))[:255],
                    stripe_created_at=datetime.fromtimestamp(event.created, tz=UTC),
                    received_at=now,
                    outcome=StripeEvent.Outcome.APPLIED,
                )
        except IntegrityError:
            return None  # already applied (or being applied by a concurrent delivery)
        outcome, payment = _apply(event, now=now)
        record.outcome = outcome
        record.payment = payment
        record.save(update_fields=["outcome", "payment"])
    return record


def _apply(event: WebhookEvent, *, now: datetime) -> tuple[str, Payment | None]:
    if event.livemode != settings.STRIPE_LIVEMODE:
        _security_event("livemode_mismatch", event)
        return StripeEvent.Outcome.IGNORED_LIVEMODE, None
    if event.type in _INTENT_EVENTS:
        return _apply_intent_event(event, now=now)
    if event.type == "charge.refunded":
        return _apply_charge_refunded(event, now=now)
    if event.type == "charge.dispute.created":
        return _apply_dispute(event, now=now)
    if event.type in _REFUND_EVENTS:
        return _apply_refund_event(event, now=now)
    if event.type in _SETUP_EVENTS:
        return _apply_setup_event(event, now=now), None
    if event.type == "payment_method.detached":
        return _apply_payment_method_detached(event, now=now), None
    if event.type == "account.updated":
        known = provider_account_update(
            account_id=str(event.object["id"]),
            payouts_enabled=event.object.get("payouts_enabled") is True,
            now=now,
        )
        return (StripeEvent.Outcome.APPLIED if known else StripeEvent.Outcome.UNKNOWN_OBJECT), None
    return StripeEvent.Outcome.UNHANDLED_TYPE, None


def _payment_for_intent(event: WebhookEvent, intent_id: str) -> Payment | None:
    """The locked payment whose stored intent id is ``intent_id``. The event's metadata is only
    compared, never followed: a mismatch is a security event, not a redirection."""
    payment = (
        Payment.objects.select_for_update().filter(stripe_payment_intent_id=intent_id).first()
        if intent_id
        else None
    )
    metadata = event.object.get("metadata") or {}
    claimed = str(metadata.get("payment_ref", "")) if isinstance(metadata, Mapping) else ""
    if payment is None:
        _security_event("unknown_intent", event)
    elif claimed and claimed != str(payment.pk):
        _security_event("metadata_mismatch", event, payment=payment)
    return payment


def _apply_intent_event(event: WebhookEvent, *, now: datetime) -> tuple[str, Payment | None]:
    payment = _payment_for_intent(event, str(event.object["id"]))
    if payment is None:
        return StripeEvent.Outcome.UNKNOWN_OBJECT, None
    intent = event.payment_intent
    if intent is None:
        raise WebhookRejectedError("The event's payment intent is malformed.")
    decision = payment_apply_intent(
        payment=payment, intent=intent, reason=event.type, now=now, stripe_event_id=event.id
    )
    if event.type == "payment_intent.payment_failed":
        payment_booking_follow(payment=payment, before=payment.state, now=now, failed=True)
    return _outcome(decision), payment


def _apply_charge_refunded(event: WebhookEvent, *, now: datetime) -> tuple[str, Payment | None]:
    charge = event.object
    payment = _payment_for_intent(event, event.payment_intent_id)
    if payment is None:
        return StripeEvent.Outcome.UNKNOWN_OBJECT, None
    captured = int(charge.get("amount_captured") or charge.get("amount") or 0)
    refunded = int(charge.get("amount_refunded") or 0)
    known_refunded = payment.amount_refunded_minor
    payment.amount_captured_minor = min(
        payment.amount_minor, max(payment.amount_captured_minor, captured)
    )
    payment.amount_refunded_minor = min(
        payment.amount_captured_minor, max(payment.amount_refunded_minor, refunded)
    )
    # Our own refunds are counted when we ask for them, so Stripe's total going past ours is
    # money refunded elsewhere (the Dashboard): audited, and taken back from a sent payout
    # (PAY-14) once this transaction commits.
    external = payment.amount_refunded_minor - known_refunded
    if external > 0:
        audit_record(
            action="billing.refund.external",
            actor_label="system",
            resource_type="billing.payment",
            resource_id=str(payment.pk),
            patient_id=payment.client_id,
            details={"amount_minor": external, "stripe_event": event.id},
        )
        payout_reverse_after_commit(payment_id=payment.pk, why="refund")
    payment.stripe_charge_id = str(charge["id"])
    target = states.state_of_amounts(
        captured=payment.amount_captured_minor, refunded=payment.amount_refunded_minor
    )
    decision = states.decide(payment.state, target)
    if decision is states.Decision.APPLY:
        payment_transition(
            payment=payment, to=target, reason=event.type, now=now, stripe_event_id=event.id
        )
    else:
        payment.updated_at = now
        payment.save(
            update_fields=[
                "amount_captured_minor",
                "amount_refunded_minor",
                "stripe_charge_id",
                "updated_at",
            ]
        )
    return _outcome(decision), payment


def _apply_dispute(event: WebhookEvent, *, now: datetime) -> tuple[str, Payment | None]:
    dispute = event.object
    payment = _payment_for_intent(event, event.payment_intent_id)
    if payment is None:
        return StripeEvent.Outcome.UNKNOWN_OBJECT, None
    if payment.disputed_at is not None:
        return StripeEvent.Outcome.STALE, payment
    payment.disputed_at = now
    payment.updated_at = now
    payment.save(update_fields=["disputed_at", "updated_at"])
    security_log.warning("payment %s disputed (event %s)", payment.pk, event.id)
    payout_reverse_after_commit(payment_id=payment.pk, why="dispute")
    audit_record(
        action="billing.payment.disputed",
        actor_label="system",
        resource_type="billing.payment",
        resource_id=str(payment.pk),
        patient_id=payment.client_id,
        details={"stripe_event": event.id, "dispute": str(dispute["id"])},
    )
    return StripeEvent.Outcome.APPLIED, payment


def _apply_refund_event(event: WebhookEvent, *, now: datetime) -> tuple[str, Payment | None]:
    payment = _payment_for_intent(event, event.payment_intent_id)
    if payment is None:
        return StripeEvent.Outcome.UNKNOWN_OBJECT, None
    refund = Refund.objects.filter(payment=payment, stripe_refund_id=event.object["id"]).first()
    if refund is None:
        return StripeEvent.Outcome.UNKNOWN_OBJECT, payment
    refund.payment = payment  # the locked instance
    changed = refund_apply_update(
        refund=refund, status=str(event.object.get("status", "")), now=now, stripe_event_id=event.id
    )
    return (StripeEvent.Outcome.APPLIED if changed else StripeEvent.Outcome.STALE), payment


def _apply_setup_event(event: WebhookEvent, *, now: datetime) -> str:
    """A SetupIntent we created changed: found by OUR stored id; its customer must be the one we
    created it on (a mismatch is a security event and changes nothing)."""
    setup = (
        PaymentMethodSetup.objects.select_for_update()
        .filter(stripe_setup_intent_id=str(event.object["id"]))
        .first()
    )
    if setup is None:
        _security_event("unknown_setup_intent", event)
        return StripeEvent.Outcome.UNKNOWN_OBJECT
    intent = event.setup_intent
    if intent is None:
        raise WebhookRejectedError("The event's setup intent is malformed.")
    if intent.customer_id != setup.stripe_customer_id:
        _security_event("customer_mismatch", event, client_id=setup.client_id)
        return StripeEvent.Outcome.UNKNOWN_OBJECT
    changed = setup_apply_intent(setup=setup, intent=intent, now=now, stripe_event_id=event.id)
    return StripeEvent.Outcome.APPLIED if changed else StripeEvent.Outcome.STALE


def _apply_payment_method_detached(event: WebhookEvent, *, now: datetime) -> str:
    """A card was detached at Stripe (the Dashboard, or Stripe's own removal): found by OUR
    stored payment method id, never by the event's metadata; ours is removed once."""
    method = (
        SavedPaymentMethod.objects.select_for_update()
        .filter(stripe_payment_method_id=str(event.object["id"]))
        .first()
    )
    if method is None:
        _security_event("unknown_payment_method", event)
        return StripeEvent.Outcome.UNKNOWN_OBJECT
    changed = payment_method_detached_at_stripe(method=method, now=now, stripe_event_id=event.id)
    return StripeEvent.Outcome.APPLIED if changed else StripeEvent.Outcome.STALE


def _outcome(decision: states.Decision) -> str:
    return (
        StripeEvent.Outcome.APPLIED
        if decision is states.Decision.APPLY
        else StripeEvent.Outcome.STALE
    )


def _security_event(
    why: str,
    event: WebhookEvent,
    *,
    payment: Payment | None = None,
    client_id: uuid.UUID | None = None,
) -> None:
    security_log.warning("stripe event %s ignored or flagged: %s", event.id, why)
    audit_record(
        action=f"billing.webhook.{why}",
        actor_label="system",
        outcome=Outcome.DENIED,
        resource_type="stripe_event",
        resource_id=event.id[:64],
        patient_id=payment.client_id if payment is not None else client_id,
        details={"type": event.type, "livemode": event.livemode},
    )
