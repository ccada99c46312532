"""Imported calendars: a therapist's external calendars and the busy times read from them."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import F, Q

from scheduling.models.directory import TherapistProfile


class CalendarSource(models.TextChoices):
    UPLOAD = "upload", "Uploaded ICS"
    URL = "url", "ICS URL fetched periodically"


class ExternalCalendar(models.Model):
    """An external busy calendar. Its content (upload) or address (URL, often a secret link)
    is stored encrypted; its expanded busy times are ``ExternalBusyInterval`` rows.

    ``sync_calendars`` claims due rows with a conditional update on ``claimed_until``.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    therapist = models.ForeignKey(
        TherapistProfile, on_delete=models.CASCADE, related_name="external_calendars"
    )
    name = models.CharField(max_length=80)
    source = models.CharField(max_length=8, choices=CalendarSource.choices)
    url_encrypted = models.TextField(blank=True)
    url_host = models.CharField(max_length=255, blank=True)
    content_encrypted = models.TextField(blank=True)
    content_sha256 = models.CharField(max_length=64, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=64, blank=True)
    next_sync_at = models.DateTimeField()
    claimed_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(source=CalendarSource.UPLOAD, url_encrypted="")
                | Q(source=CalendarSource.URL) & ~Q(url_encrypted=""),
                name="calendar_source_shape",
            ),
        ]
        indexes = [models.Index(fields=["next_sync_at"], name="calendar_next_sync")]

    def __str__(self) -> str:
        return f"ExternalCalendar {self.pk}"


class ExternalBusyInterval(models.Model):
    """One busy time expanded from an external calendar (UTC)."""

    calendar = models.ForeignKey(
        ExternalCalendar, on_delete=models.CASCADE, related_name="busy_intervals"
    )
    therapist = models.ForeignKey(TherapistProfile, on_delete=models.CASCADE, related_name="+")
    start = models.DateTimeField()
    end = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(end__gt=F("start")), name="busy_end_after_start"),
        ]
        indexes = [models.Index(fields=["therapist", "start"], name="busy_therapist_start")]

    def __str__(self) -> str:
        return f"ExternalBusyInterval {self.pk}"
