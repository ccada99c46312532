"""What a therapist offers: session types (length, price, delivery)."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from scheduling.models.directory import Delivery, TherapistProfile

# The longest session a session type may have, in minutes.
SESSION_MAX_MINUTES = 480


class SessionType(models.Model):
    """What a client books: length, price in minor units of an ISO 4217 currency, delivery.

    Archived (``is_active=False``) rather than deleted, since bookings keep pointing at it.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    therapist = models.ForeignKey(
        TherapistProfile, on_delete=models.CASCADE, related_name="session_types"
    )
    name = models.CharField(max_length=80)
    duration_minutes = models.PositiveSmallIntegerField()
    price_minor = models.PositiveIntegerField()
    currency = models.CharField(max_length=3)
    delivery = models.CharField(max_length=16, choices=Delivery.choices, default=Delivery.VIDEO)
    cpt_code = models.CharField(max_length=5, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(duration_minutes__gt=0) & Q(duration_minutes__lte=SESSION_MAX_MINUTES),
                name="session_type_duration_range",
            ),
            models.CheckConstraint(condition=Q(price_minor__gte=0), name="session_type_price"),
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[A-Z]{3}$"), name="session_type_currency_iso"
            ),
            models.CheckConstraint(
                condition=Q(delivery__in=[d.value for d in Delivery]),
                name="session_type_delivery_valid",
            ),
            models.UniqueConstraint(
                fields=["therapist", "name"],
                condition=Q(is_active=True),
                name="session_type_active_name_unique",
            ),
        ]
        indexes = [
            models.Index(
                fields=["therapist", "is_active", "price_minor"], name="session_type_price_idx"
            )
        ]

    def __str__(self) -> str:
        return f"SessionType {self.pk}"
