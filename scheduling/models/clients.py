"""Client profiles: what a client tells their therapists about themselves."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from audit.registry import protected


@protected("scheduling.client_profile", patient=lambda profile: profile.user_id)
class ClientProfile(models.Model):
    """A client's protected details. Date of birth, phone and emergency contact are encrypted
    (all under the key ``key_id`` names, bound to the user and field); ``phone_index`` is a
    keyed hash (blind index) of the normalised phone for equality lookups. The home
    jurisdiction is a region code, kept in clear."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="client_profile"
    )
    date_of_birth_encrypted = models.TextField(blank=True)
    phone_encrypted = models.TextField(blank=True)
    phone_index = models.CharField(max_length=64, blank=True)
    emergency_contact_encrypted = models.TextField(blank=True)
    home_jurisdiction = models.CharField(max_length=6, blank=True)
    key_id = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(home_jurisdiction="")
                | Q(home_jurisdiction__regex=r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$"),
                name="client_home_jurisdiction_iso3166",
            ),
        ]
        indexes = [
            models.Index(
                fields=["phone_index"], condition=~Q(phone_index=""), name="client_phone_index"
            ),
            models.Index(fields=["key_id", "id"], name="client_profile_key"),
        ]

    def __str__(self) -> str:
        return f"ClientProfile {self.pk}"
