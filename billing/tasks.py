"""Billing's periodic job (api/jobs.py): settling fee requests and pending refunds."""

from __future__ import annotations

from django.utils import timezone

from api.jobs import periodic_job
from billing.services.lifecycle import billing_settle as lifecycle_settle


@periodic_job("billing_settle")
def billing_settle() -> dict[str, int]:
    """Settle fee requests and send pending refunds (as ``manage.py billing_settle``)."""
    return lifecycle_settle(now=timezone.now())
