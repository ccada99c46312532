"""Reads of billing data."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db.models import QuerySet

from api.models import Role, User
from billing.models import Payment, SavedPaymentMethod


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


def payment_methods_active(*, client_id: uuid.UUID) -> QuerySet[SavedPaymentMethod]:
    """A client's saved cards that are not removed, the default first: the one they chose,
    or else the one saved last; then the newest first."""
    return SavedPaymentMethod.objects.filter(client_id=client_id, detached_at=None).order_by(
        "-is_default", "-created_at", "-pk"
    )


def payment_method_default(*, client_id: uuid.UUID) -> SavedPaymentMethod | None:
    """The card off-session fees are charged to: the one the client chose, or else (none
    chosen, or the chosen one removed) the one saved last."""
    return payment_methods_active(client_id=client_id).first()
