"""Billing's jobs (api/jobs.py): a refund, a saved card and the development gateway's events
after commit; settling fee requests, pending refunds and unsaved cards periodically."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.utils import timezone

from api.jobs import after_commit_task, periodic_job
from billing.services.dev_events import dev_events_deliver
from billing.services.lifecycle import billing_settle as lifecycle_settle
from billing.services.methods import setup_card_save
from billing.services.payouts import payout_reverse_due
from billing.services.refunds import refund_submit


@after_commit_task("send_refund")
def send_refund(*, refund_id: str) -> None:
    """Send a refund reserved by a committed change (with its own idempotency key: safe to run
    twice, a refund Stripe has is not sent again). Retried with back-off while Stripe cannot
    take it; ``billing_settle`` sends any that is still pending a minute on."""
    refund_submit(refund_id=uuid.UUID(refund_id), now=timezone.now())


@after_commit_task("save_payment_method")
def save_payment_method(*, setup_id: str, event: str) -> None:
    """Save the card of a setup whose ``setup_intent.succeeded`` was applied (its details read
    from Stripe, which the webhook does not wait for; safe to run twice: a saved card is not
    saved again). ``billing_settle`` saves any card still unsaved a minute on."""
    setup_card_save(setup_id=uuid.UUID(setup_id), now=timezone.now(), event=event)


@after_commit_task("reverse_payout")
def reverse_payout(*, payment_id: str, why: str) -> None:
    """Take back from a payment's sent transfer what a committed refund or dispute calls for
    (safe to run twice: only what is still due is reversed, each reversal with its own key)."""
    payout_reverse_due(payment_id=uuid.UUID(payment_id), why=why, now=timezone.now())


@after_commit_task("deliver_dev_events")
def deliver_dev_events() -> None:
    """Deliver the development gateway's pending events through the webhook path (each claimed
    by one deliverer, applied once by its ``StripeEvent`` row; ``dev_gateway_deliver`` and
    ``billing_settle`` deliver what this left)."""
    dev_events_deliver()


@periodic_job("billing_settle")
def billing_settle() -> dict[str, int]:
    """Settle fee requests and send pending refunds (as ``manage.py billing_settle``); on the
    development gateway, deliver its events still pending (as ``manage.py dev_gateway_deliver``)."""
    result = lifecycle_settle(now=timezone.now())
    if settings.BILLING_GATEWAY == "dev":
        result["dev_events_delivered"] = dev_events_deliver()
    return result
