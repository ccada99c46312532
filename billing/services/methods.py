"""Saved payment methods: a client saves a card through a SetupIntent (usage ``off_session``)
so that later fees (a late cancellation, a no-show) can be charged without them present.

The card goes from the app straight to Stripe with the SetupIntent's ``client_secret``; we keep
Stripe's payment method id and what the client needs to recognise the card (brand, last four
digits, expiry). ``setup_intent.succeeded`` (a webhook, applied exactly once like every event)
records which card Stripe attached; a task after the webhook's commit reads the card's details
from Stripe and saves it (``setup_card_save``, once: its Stripe id is unique), so the webhook
answers without calling Stripe, and ``billing_settle`` saves any card whose task never ran. A
client's repeated request reuses the open SetupIntent (PAY-02's rule for setups).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest

from api.errors import NotFoundError
from api.jobs import enqueue_after_commit
from api.models import User
from audit.services import audit_access, audit_record
from billing.gateways.base import InvalidGatewayRequest, SetupIntentResult
from billing.models import PaymentMethodSetup, SavedPaymentMethod, StripeCustomer
from billing.services.payments import customer_ensure, gateway_call

logger = logging.getLogger("billing")

# What ``setup_card_save`` marks on a setup whose payment method is not a usable card.
UNUSABLE_PAYMENT_METHOD = "unusable_payment_method"
_OPEN = frozenset(
    {
        PaymentMethodSetup.State.REQUIRES_PAYMENT_METHOD,
        PaymentMethodSetup.State.REQUIRES_CONFIRMATION,
        PaymentMethodSetup.State.REQUIRES_ACTION,
        PaymentMethodSetup.State.PROCESSING,
    }
)


@dataclass(frozen=True)
class SetupStart:
    """What the app needs to collect a card with Stripe's SDK."""

    setup: PaymentMethodSetup
    client_secret: str


def setup_intent_idempotency_key(setup: PaymentMethodSetup) -> str:
    return f"billing:setup_intent:{setup.client_id}:{setup.version}"


def payment_method_setup_start(
    *, client: User, request: HttpRequest | None, now: datetime
) -> SetupStart:
    """Start (or resume) saving a card: the client's open SetupIntent, or a new one on their
    Stripe Customer with ``usage=off_session``. The client's customer row is locked while Stripe
    is called, so a double click gets one SetupIntent even from a Stripe double that ignores
    idempotency keys; the key ``billing:setup_intent:<client>:<version>`` covers a crash."""
    customer_id = customer_ensure(user_id=client.pk, now=now)
    with transaction.atomic():
        StripeCustomer.objects.select_for_update().get(user_id=client.pk)
        latest = (
            PaymentMethodSetup.objects.select_for_update()
            .filter(client_id=client.pk)
            .order_by("-version")
            .first()
        )
        if latest is not None and latest.state in _OPEN and latest.stripe_setup_intent_id:
            intent_id = latest.stripe_setup_intent_id
            intent = gateway_call(lambda gateway: gateway.setup_intent_retrieve(intent_id))
            setup_apply_intent(setup=latest, intent=intent, now=now)
            if latest.state in _OPEN:
                _audit_setup(latest, client=client, request=request, resumed=True)
                return SetupStart(setup=latest, client_secret=intent.client_secret)
        setup = PaymentMethodSetup.objects.create(
            client=client,
            version=latest.version + 1 if latest is not None else 1,
            stripe_customer_id=customer_id,
            created_at=now,
            updated_at=now,
        )
        intent = gateway_call(
            lambda gateway: gateway.setup_intent_create(
                idempotency_key=setup_intent_idempotency_key(setup),
                customer_id=customer_id,
                metadata={"setup_ref": str(setup.pk), "user_ref": str(client.pk)},
            )
        )
        setup.stripe_setup_intent_id = intent.id
        setup.save(update_fields=["stripe_setup_intent_id"])
        setup_apply_intent(setup=setup, intent=intent, now=now)
        _audit_setup(setup, client=client, request=request, resumed=False)
    return SetupStart(setup=setup, client_secret=intent.client_secret)


def setup_apply_intent(
    *,
    setup: PaymentMethodSetup,
    intent: SetupIntentResult,
    now: datetime,
    stripe_event_id: str = "",
) -> bool:
    """Apply what Stripe says of a LOCKED setup. ``succeeded`` and ``canceled`` are final;
    success records the card Stripe attached and, once this transaction commits, a task saves it
    (``save_payment_method``; ``stripe_event_id`` goes in its audit event). Returns whether
    anything changed."""
    if setup.state not in _OPEN or intent.status not in PaymentMethodSetup.State.values:
        return False
    if intent.status == setup.state and not intent.last_error_code:
        return False
    setup.state = intent.status
    setup.last_error_code = intent.last_error_code[:64]
    setup.updated_at = now
    if setup.state == PaymentMethodSetup.State.SUCCEEDED:
        setup.stripe_payment_method_id = intent.payment_method_id[:255]
    setup.save(update_fields=["state", "last_error_code", "stripe_payment_method_id", "updated_at"])
    if setup.state == PaymentMethodSetup.State.SUCCEEDED and setup.stripe_payment_method_id:
        from billing.tasks import save_payment_method  # the task module imports this one

        enqueue_after_commit(save_payment_method, setup_id=str(setup.pk), event=stripe_event_id)
    return True


def setups_with_card_unsaved(*, before: datetime) -> QuerySet[PaymentMethodSetup]:
    """Setups that succeeded before ``before`` whose card is neither saved nor found unusable:
    what ``billing_settle`` saves when the task after the webhook never ran."""
    return _awaiting_card().filter(updated_at__lt=before)


def _awaiting_card() -> QuerySet[PaymentMethodSetup]:
    """Setups that succeeded whose card is neither saved nor found unusable."""
    saved = SavedPaymentMethod.objects.filter(
        stripe_payment_method_id=OuterRef("stripe_payment_method_id")
    )
    return PaymentMethodSetup.objects.filter(
        ~Exists(saved), state=PaymentMethodSetup.State.SUCCEEDED, last_error_code=""
    ).exclude(stripe_payment_method_id="")


def setup_card_save(*, setup_id: uuid.UUID, now: datetime, event: str = "") -> bool:
    """Save the card of a setup that succeeded: its details read from Stripe first (outside any
    transaction), then, with the setup locked, one ``SavedPaymentMethod`` (its Stripe id is
    unique) that becomes the client's default, audited. Safe to run twice or from two workers:
    a card saved already is left as it is. A payment method that is not a usable card is marked
    on the setup (``last_error_code``) and never asked for again. Returns whether it saved."""
    awaited = _awaiting_card().filter(pk=setup_id)
    method_id = awaited.values_list("stripe_payment_method_id", flat=True).first()
    if method_id is None:
        return False
    method = gateway_call(lambda gateway: gateway.payment_method_retrieve(method_id))
    with transaction.atomic():
        setup = PaymentMethodSetup.objects.select_for_update().get(pk=setup_id)
        if setup.stripe_payment_method_id != method.id or not awaited.exists():
            return False
        usable = method.type == "card" and method.last4.isdigit() and 1 <= method.exp_month <= 12
        if not usable:
            logger.warning("setup %s: payment method is not a usable card", setup.pk)
            setup.last_error_code = UNUSABLE_PAYMENT_METHOD
            setup.updated_at = now
            setup.save(update_fields=["last_error_code", "updated_at"])
            return False
        saved, created = SavedPaymentMethod.objects.get_or_create(
            stripe_payment_method_id=method.id,
            defaults={
                "client_id": setup.client_id,
                "setup": setup,
                "brand": method.brand[:32],
                "last4": method.last4,
                "exp_month": method.exp_month,
                "exp_year": method.exp_year,
                "created_at": now,
            },
        )
        if created:
            # Saving a card is the client's latest word on which card to use: an earlier
            # choice of default gives way to the new card (the newest), which a failed fee
            # asks them for.
            SavedPaymentMethod.objects.filter(client_id=setup.client_id, is_default=True).exclude(
                pk=saved.pk
            ).update(is_default=False)
            audit_record(
                action="billing.payment_method.saved",
                actor_label="system",
                resource_type="billing.payment_method",
                resource_id=str(saved.pk),
                patient_id=setup.client_id,
                details={"setup": str(setup.pk), "stripe_event": event},
            )
        return created


def payment_method_detach(
    *, method_id: uuid.UUID, client: User, request: HttpRequest | None, now: datetime
) -> SavedPaymentMethod:
    """The client removes one of their saved cards: detached from their Stripe Customer, so it
    can never be charged again. Someone else's card, an unknown id, or one already removed is
    404 (the caller's ``AuditedMixin`` records the denial)."""
    with transaction.atomic():
        method = (
            SavedPaymentMethod.objects.select_for_update()
            .filter(pk=method_id, client_id=client.pk, detached_at=None)
            .first()
        )
        if method is None:
            raise NotFoundError("No such payment method.")
        stripe_id = method.stripe_payment_method_id
        try:
            gateway_call(
                lambda gateway: gateway.payment_method_detach(
                    payment_method_id=stripe_id,
                    idempotency_key=f"billing:payment_method_detach:{method.pk}",
                )
            )
        except InvalidGatewayRequest as exc:
            # Already detached at Stripe (from the Dashboard, say): ours follows.
            logger.warning("payment method %s: detach refused by Stripe (%s)", method.pk, exc.code)
        _mark_detached(method, now=now)
        # From an AuditedMixin view (no actor) the event joins the request's batch.
        actor = None if request is not None else client
        audit_access(obj=method, action="billing.payment_method.detach", actor=actor)
    return method


def payment_method_detached_at_stripe(
    *, method: SavedPaymentMethod, now: datetime, stripe_event_id: str
) -> bool:
    """Stripe says a LOCKED card was detached from its customer (the Dashboard, or Stripe's own
    removal of a card): ours is removed too, once, audited as a system event. Returns whether
    anything changed (a card we already removed is left as it is)."""
    if method.detached_at is not None:
        return False
    _mark_detached(method, now=now)
    audit_access(
        obj=method,
        action="billing.payment_method.detached",
        actor_label="system",
        details={"stripe_event": stripe_event_id},
    )
    return True


def payment_method_set_default(
    *, method_id: uuid.UUID, client: User, request: HttpRequest | None
) -> SavedPaymentMethod:
    """The client chooses which of their cards off-session fees are charged to. Their cards are
    locked (in pk order) so two choices made at once end with one default; the database keeps
    at most one per client whatever happens. Someone else's card, an unknown id, or one removed
    is 404 (the caller's ``AuditedMixin`` records the denial)."""
    with transaction.atomic():
        methods = list(
            SavedPaymentMethod.objects.select_for_update()
            .filter(client_id=client.pk, detached_at=None)
            .order_by("pk")
        )
        chosen = next((method for method in methods if method.pk == method_id), None)
        if chosen is None:
            raise NotFoundError("No such payment method.")
        for method in methods:
            if method.is_default and method.pk != chosen.pk:
                method.is_default = False
                method.save(update_fields=["is_default"])
        if not chosen.is_default:
            chosen.is_default = True
            chosen.save(update_fields=["is_default"])
        # From an AuditedMixin view (no actor) the event joins the request's batch.
        actor = None if request is not None else client
        audit_access(obj=chosen, action="billing.payment_method.default", actor=actor)
    return chosen


def _mark_detached(method: SavedPaymentMethod, *, now: datetime) -> None:
    """A removed card is never the default: the newest card left takes its place."""
    method.detached_at = now
    method.is_default = False
    method.save(update_fields=["detached_at", "is_default"])


def _audit_setup(
    setup: PaymentMethodSetup, *, client: User, request: HttpRequest | None, resumed: bool
) -> None:
    audit_record(
        action="billing.payment_method.setup",
        actor=client,
        request=request,
        resource_type="payment_method_setup",
        resource_id=str(setup.pk),
        patient_id=client.pk,
        details={"version": setup.version, "resumed": resumed},
    )
