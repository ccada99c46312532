"""Where a therapist may practise: licences an admin verifies, by jurisdiction and expiry."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from scheduling.models.directory import TherapistProfile


class Licence(models.Model):
    """A licence to practise in a jurisdiction (ISO 3166-2 code such as ``US-NY``, or a country).

    It counts ("current") once an admin has verified it and until it expires; changing the
    jurisdiction, number or expiry clears the verification.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    therapist = models.ForeignKey(
        TherapistProfile, on_delete=models.CASCADE, related_name="licences"
    )
    jurisdiction = models.CharField(max_length=6)
    number = models.CharField(max_length=64)
    expires_on = models.DateField()
    verified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    verified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["therapist", "jurisdiction", "number"], name="licence_unique"
            ),
            models.CheckConstraint(
                condition=Q(jurisdiction__regex=r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$"),
                name="licence_jurisdiction_iso3166",
            ),
            models.CheckConstraint(
                condition=Q(verified_by__isnull=True, verified_at__isnull=True)
                | Q(verified_by__isnull=False, verified_at__isnull=False),
                name="licence_verified_together",
            ),
        ]
        indexes = [
            models.Index(
                fields=["therapist", "jurisdiction", "expires_on"],
                condition=Q(verified_at__isnull=False),
                name="licence_current_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"Licence {self.pk}"
