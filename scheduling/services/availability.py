"""Working hours: weekly rules (replaced as a whole) and date overrides."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from django.db import transaction

from scheduling.models import (
    AvailabilityOverride,
    AvailabilityRule,
    OverrideKind,
    TherapistProfile,
)
from scheduling.services.directory import availability_summary_refresh


@dataclass(frozen=True)
class WeeklyWindowInput:
    weekday: int
    start_minute: int
    end_minute: int


@transaction.atomic
def availability_rules_replace(
    *, profile: TherapistProfile, windows: list[WeeklyWindowInput], now: datetime
) -> list[AvailabilityRule]:
    """The therapist's weekly hours become exactly ``windows`` (one transaction)."""
    TherapistProfile.objects.select_for_update().filter(pk=profile.pk).first()
    AvailabilityRule.objects.filter(therapist=profile).delete()
    rules = AvailabilityRule.objects.bulk_create(
        AvailabilityRule(
            therapist=profile,
            weekday=w.weekday,
            start_minute=w.start_minute,
            end_minute=w.end_minute,
        )
        for w in sorted(windows, key=lambda w: (w.weekday, w.start_minute, w.end_minute))
    )
    availability_summary_refresh(therapist=profile, now=now)
    return rules


@transaction.atomic
def availability_override_create(
    *,
    profile: TherapistProfile,
    kind: str,
    first_date: date,
    last_date: date,
    start_minute: int | None = None,
    end_minute: int | None = None,
    now: datetime,
) -> AvailabilityOverride:
    if kind == OverrideKind.EXTRA:
        last_date = first_date
    else:
        start_minute = end_minute = None
    override = AvailabilityOverride.objects.create(
        therapist=profile,
        kind=kind,
        first_date=first_date,
        last_date=last_date,
        start_minute=start_minute,
        end_minute=end_minute,
    )
    availability_summary_refresh(therapist=profile, now=now)
    return override


@transaction.atomic
def availability_override_delete(*, override: AvailabilityOverride, now: datetime) -> None:
    therapist = override.therapist
    override.delete()
    availability_summary_refresh(therapist=therapist, now=now)
