"""Reads of billing data."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from api.models import Role, User
from billing.models import Payment


def payments_created_between(*, start: datetime, end: datetime) -> QuerySet[Payment]:
    """Payments with a Stripe intent, created in ``[start, end)``, oldest first."""
    return (
        Payment.objects.filter(created_at__gte=start, created_at__lt=end)
        .exclude(stripe_payment_intent_id=None)
        .order_by("created_at", "pk")
    )


def payments_visible_to(*, user: User) -> QuerySet[Payment]:
    """A client's own payments, or the payments for a therapist's sessions."""
    mine = (
        Payment.objects.filter(therapist=user)
        if user.role == Role.THERAPIST
        else (Payment.objects.filter(client=user))
    )
    return mine.order_by("-created_at", "-pk")
