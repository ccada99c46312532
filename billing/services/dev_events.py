"""Delivering the development gateway's events through the real webhook path.

Each pending ``DevGatewayEvent`` is claimed with a conditional update (two deliverers never send
the same one; a claim older than ``CLAIM_SECONDS`` — a deliverer that died — is taken over),
signed with ``STRIPE_WEBHOOK_SECRET`` in Stripe's scheme and handed to ``webhook_receive``: the
same signature check, the same ``StripeEvent`` row and the same exactly-once application as a
delivery from Stripe. One that fails stays pending (attempts and error kept, logged) for the next
run: after the next commit, ``manage.py dev_gateway_deliver`` or ``manage.py dev_pay``.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from billing import gateways
from billing.gateways.base import InvalidGatewayRequest
from billing.gateways.dev import DevGateway, webhook_signature
from billing.models import DevGatewayEvent, Payment, PaymentMethodSetup
from billing.services.webhooks import webhook_receive

logger = logging.getLogger("billing")

CLAIM_SECONDS = 60
MAX_EVENTS_PER_RUN = 1000


def dev_events_deliver(*, now: datetime | None = None) -> int:
    """Deliver every pending event, oldest first; how many were delivered."""
    delivered = 0
    for _ in range(MAX_EVENTS_PER_RUN):
        current = now or timezone.now()
        stale = current - timedelta(seconds=CLAIM_SECONDS)
        due = Q(state=DevGatewayEvent.State.PENDING) | Q(
            state=DevGatewayEvent.State.DELIVERING, claimed_at__lt=stale
        )
        candidate = DevGatewayEvent.objects.filter(due).order_by("id").first()
        if candidate is None:
            break
        claimed = (
            DevGatewayEvent.objects.filter(due, pk=candidate.pk).update(
                state=DevGatewayEvent.State.DELIVERING, claimed_at=current
            )
            == 1
        )
        if not claimed:
            continue  # another deliverer took it: look again
        if dev_event_deliver_one(event=candidate, now=current):
            delivered += 1
        else:
            break  # keep the order: a failed event is retried before later ones are sent
    return delivered


def dev_event_deliver_one(*, event: DevGatewayEvent, now: datetime) -> bool:
    """Sign and hand one claimed event to the webhook path; whether it was accepted."""
    payload = event.body.encode()
    signature = webhook_signature(
        payload=payload, secret=settings.STRIPE_WEBHOOK_SECRET, timestamp=int(time.time())
    )
    try:
        record = webhook_receive(payload=payload, signature_header=signature, now=now)
    except Exception as exc:  # noqa: BLE001 -- kept pending and retried, never lost
        logger.warning("dev gateway event %s not delivered: %s", event.event_id, type(exc).__name__)
        DevGatewayEvent.objects.filter(pk=event.pk).update(
            state=DevGatewayEvent.State.PENDING,
            attempts=event.attempts + 1,
            last_error=type(exc).__name__[:128],
        )
        return False
    DevGatewayEvent.objects.filter(pk=event.pk).update(
        state=DevGatewayEvent.State.DELIVERED,
        delivered_at=now,
        attempts=event.attempts + 1,
        outcome=record.outcome if record is not None else "duplicate",
        last_error="",
    )
    return True


def dev_gateway() -> DevGateway:
    """The development gateway, or ``DevGatewayNotSelected`` when billing uses Stripe."""
    gateway = gateways.get_gateway()
    if not isinstance(gateway, DevGateway):
        raise DevGatewayNotSelected(
            "Billing is not on the development gateway (DJANGO_DEBUG=1, no STRIPE_SECRET_KEY)."
        )
    return gateway


def dev_payment_confirm(
    *, payment: Payment, card_number: str, three_d_secure: str = "approve"
) -> str:
    """Pay ``payment``'s intent with a test card as Stripe.js would (``confirmCardPayment``),
    passing (``approve``) or failing (``fail``) a 3-D Secure challenge, or leaving it open
    (``leave``); then deliver the events. Returns the intent's status."""
    gateway = dev_gateway()
    if not payment.stripe_payment_intent_id:
        raise InvalidGatewayRequest("This payment has no intent yet: call /pay first.")
    intent = gateway.payment_intent_retrieve(str(payment.stripe_payment_intent_id))
    status = intent.status
    if status in ("requires_payment_method", "requires_confirmation"):
        status = gateway.payment_intent_confirm(
            client_secret=intent.client_secret, card_number=card_number
        ).status
    if status == "requires_action" and three_d_secure != "leave":
        status = gateway.three_d_secure_complete(
            client_secret=intent.client_secret, approve=three_d_secure == "approve"
        )
    dev_events_deliver()
    return status


def dev_setup_confirm(
    *, setup: PaymentMethodSetup, card_number: str, three_d_secure: str = "approve"
) -> str:
    """Save a test card on ``setup``'s SetupIntent as Stripe.js would (``confirmCardSetup``);
    then deliver the events. Returns the SetupIntent's status."""
    gateway = dev_gateway()
    intent = gateway.setup_intent_retrieve(str(setup.stripe_setup_intent_id))
    status = intent.status
    if status in ("requires_payment_method", "requires_confirmation"):
        status = gateway.setup_intent_confirm(
            client_secret=intent.client_secret, card_number=card_number
        ).status
    if status == "requires_action" and three_d_secure != "leave":
        status = gateway.three_d_secure_complete(
            client_secret=intent.client_secret, approve=three_d_secure == "approve"
        )
    dev_events_deliver()
    return status


class DevGatewayNotSelected(Exception):
    pass
