"""Working hours: weekly rules and date overrides, kept in the therapist's IANA zone as local
dates and minutes of the day (0..1440, so a window may end at 24:00), expanded by
``scheduling.slots``.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import F, Q

from scheduling.models.directory import TherapistProfile


class AvailabilityRule(models.Model):
    """A weekly window: every ``weekday`` (Monday = 0) from start to end minute, local time."""

    therapist = models.ForeignKey(
        TherapistProfile, on_delete=models.CASCADE, related_name="availability_rules"
    )
    weekday = models.PositiveSmallIntegerField()
    start_minute = models.PositiveSmallIntegerField()
    end_minute = models.PositiveSmallIntegerField()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(weekday__lte=6), name="rule_weekday_range"),
            models.CheckConstraint(
                condition=Q(end_minute__gt=F("start_minute")) & Q(end_minute__lte=1440),
                name="rule_end_after_start",
            ),
        ]
        indexes = [models.Index(fields=["therapist", "weekday"], name="rule_therapist_weekday")]

    def __str__(self) -> str:
        return f"AvailabilityRule {self.pk}"


class OverrideKind(models.TextChoices):
    EXTRA = "extra", "Extra hours on a date"
    TIME_OFF = "time_off", "Time off for a date range"


class AvailabilityOverride(models.Model):
    """Extra hours on one local date, or time off for a range of local dates (inclusive)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    therapist = models.ForeignKey(
        TherapistProfile, on_delete=models.CASCADE, related_name="availability_overrides"
    )
    kind = models.CharField(max_length=16, choices=OverrideKind.choices)
    first_date = models.DateField()
    last_date = models.DateField()
    start_minute = models.PositiveSmallIntegerField(null=True, blank=True)
    end_minute = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(last_date__gte=F("first_date")), name="override_dates_ordered"
            ),
            models.CheckConstraint(
                condition=(
                    Q(
                        kind=OverrideKind.EXTRA,
                        last_date=F("first_date"),
                        start_minute__isnull=False,
                        end_minute__gt=F("start_minute"),
                        end_minute__lte=1440,
                    )
                    | Q(
                        kind=OverrideKind.TIME_OFF,
                        start_minute__isnull=True,
                        end_minute__isnull=True,
                    )
                ),
                name="override_kind_shape",
            ),
        ]
        indexes = [
            models.Index(fields=["therapist", "last_date"], name="override_therapist_last"),
        ]

    def __str__(self) -> str:
        return f"AvailabilityOverride {self.pk}"
