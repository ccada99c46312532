"""The therapist directory: profiles, their searchable attributes, and the precomputed runs of
open slots that rank the directory.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class Delivery(models.TextChoices):
    VIDEO = "video", "Video"
    AUDIO = "audio", "Audio only (phone)"
    IN_PERSON = "in_person", "In person"


class CalendarDetail(models.TextChoices):
    """What a therapist's ICS feed shows of a client: initials (default) or nothing."""

    INITIALS = "initials", "Session + client initials"
    NONE = "none", "Session only"


# A far-future instant used as the sort key of therapists with no open slot (sorted last).
NO_OPEN_SLOT_RANK = datetime(9999, 12, 31, tzinfo=UTC)


class TherapistProfile(models.Model):
    """A therapist's public profile and booking settings (one per user with role therapist).

    ``next_open_slot``/``availability_rank``/``availability_computed_at`` are a summary kept by
    ``services.availability_summary_refresh`` (with ``OpenSlotRun``) for the directory.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="therapist_profile"
    )
    display_name = models.CharField(max_length=120)
    pronouns = models.CharField(max_length=40, blank=True)
    bio = models.TextField(max_length=5000, blank=True)
    photo_url = models.URLField(max_length=500, blank=True)
    time_zone = models.CharField(max_length=64)
    accepting_new_clients = models.BooleanField(default=True)

    # Booking settings.
    buffer_before_minutes = models.PositiveSmallIntegerField(default=0)
    buffer_after_minutes = models.PositiveSmallIntegerField(default=0)
    min_notice_minutes = models.PositiveIntegerField(default=24 * 60)
    horizon_days = models.PositiveSmallIntegerField(default=60)
    max_sessions_per_day = models.PositiveSmallIntegerField(null=True, blank=True)
    slot_step_minutes = models.PositiveSmallIntegerField(default=30)
    calendar_detail = models.CharField(
        max_length=16, choices=CalendarDetail.choices, default=CalendarDetail.INITIALS
    )

    # Directory card: the public lists a directory row shows (specialties, modalities, languages,
    # active session types, verified licences), rebuilt by ``services.directory_card_refresh``
    # whenever they change, so a directory page is one query.
    card = models.JSONField(default=dict, blank=True)

    # Directory summary (precomputed).
    next_open_slot = models.DateTimeField(null=True, blank=True)
    availability_rank = models.DateTimeField(default=NO_OPEN_SLOT_RANK)
    availability_computed_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(buffer_before_minutes__lte=240) & Q(buffer_after_minutes__lte=240),
                name="therapist_buffers_range",
            ),
            models.CheckConstraint(
                condition=Q(horizon_days__gte=1) & Q(horizon_days__lte=365),
                name="therapist_horizon_range",
            ),
            models.CheckConstraint(
                condition=Q(max_sessions_per_day__isnull=True) | Q(max_sessions_per_day__gte=1),
                name="therapist_max_per_day_positive",
            ),
            models.CheckConstraint(
                condition=Q(slot_step_minutes__gte=5) & Q(slot_step_minutes__lte=240),
                name="therapist_step_range",
            ),
        ]
        indexes = [
            models.Index(fields=["availability_rank", "id"], name="therapist_rank_id"),
        ]

    def __str__(self) -> str:
        return f"TherapistProfile {self.pk}"


class Attribute(models.TextChoices):
    SPECIALTY = "specialty", "Specialty"
    MODALITY = "modality", "Modality"  # therapy approach: cbt, dbt, emdr, ...
    LANGUAGE = "language", "Language"  # BCP 47 tag


class TherapistAttribute(models.Model):
    """One searchable value of a profile's specialties, modalities or languages.

    Kept as rows (not a JSON list) so the directory filters by an indexed ``EXISTS`` on every
    database.
    """

    therapist = models.ForeignKey(
        TherapistProfile, on_delete=models.CASCADE, related_name="attributes"
    )
    kind = models.CharField(max_length=16, choices=Attribute.choices)
    value = models.CharField(max_length=40)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["therapist", "kind", "value"], name="therapist_attribute_unique"
            ),
        ]
        indexes = [models.Index(fields=["kind", "value", "therapist"], name="attribute_lookup")]

    def __str__(self) -> str:
        return f"TherapistAttribute {self.pk}"


class OpenSlotRun(models.Model):
    """Directory summary: open starts from ``first_start`` to ``last_start`` every slot step.

    Rebuilt by ``services.availability_summary_refresh``; answers "has an open slot between A
    and B" with one indexed ``EXISTS`` per therapist.
    """

    therapist = models.ForeignKey(
        TherapistProfile, on_delete=models.CASCADE, related_name="open_slot_runs"
    )
    first_start = models.DateTimeField()
    last_start = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(last_start__gte=F("first_start")), name="run_ordered"
            ),
        ]
        indexes = [
            models.Index(fields=["therapist", "last_start", "first_start"], name="run_lookup"),
        ]

    def __str__(self) -> str:
        return f"OpenSlotRun {self.pk}"
