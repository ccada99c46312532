"""Calendar feeds out: the secret tokens of a user's ICS subscription."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class CalendarFeedToken(models.Model):
    """A secret feed address ``/api/v1/calendars/<lookup><secret>.ics`` for one user.

    Only an HMAC of the secret is stored; the lookup part finds the row, the secret is compared
    in constant time. Revoked tokens stop working at once.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="calendar_feed_tokens"
    )
    lookup = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"CalendarFeedToken {self.pk}"
