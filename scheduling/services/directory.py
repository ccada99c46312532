"""The therapist directory: profiles and their card, and the precomputed availability summary
that ranks it.

Every change that can move a therapist's open slots ends with ``availability_summary_refresh``
in the same transaction, so the directory's summary follows it; a booking or a hold that
starts or stops blocking marks it stale instead (``scheduling.bookings.lifecycle``), and the
every-minute job recomputes it (``availability_summaries_refresh``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q

from api.errors import ConflictError
from api.models import Role, User
from scheduling import selectors, slots
from scheduling.models import (
    NO_OPEN_SLOT_RANK,
    Attribute,
    Licence,
    OpenSlotRun,
    SessionType,
    TherapistAttribute,
    TherapistProfile,
)

# How far ahead the directory summary looks (its "open slot between A and B" filter cannot
# look further).
SUMMARY_DAYS = 60


CARD_SESSION_TYPE_FIELDS = (
    "id",
    "name",
    "duration_minutes",
    "price_minor",
    "currency",
    "delivery",
    "cpt_code",
)


def _set_attributes(*, profile: TherapistProfile, kind: str, values: list[str]) -> None:
    TherapistAttribute.objects.filter(therapist=profile, kind=kind).delete()
    TherapistAttribute.objects.bulk_create(
        TherapistAttribute(therapist=profile, kind=kind, value=value, position=i)
        for i, value in enumerate(dict.fromkeys(values))
    )


_ATTRIBUTE_FIELDS = {
    "specialties": Attribute.SPECIALTY,
    "modalities": Attribute.MODALITY,
    "languages": Attribute.LANGUAGE,
}


def _apply_profile_fields(profile: TherapistProfile, fields: dict[str, Any]) -> list[str]:
    changed = []
    for name, value in fields.items():
        if name in _ATTRIBUTE_FIELDS:
            _set_attributes(profile=profile, kind=_ATTRIBUTE_FIELDS[name], values=value)
        else:
            setattr(profile, name, value)
            changed.append(name)
    return changed


def directory_card_refresh(*, therapist: TherapistProfile) -> None:
    """Rebuild the profile's directory card from its attributes, active session types and
    verified licences (expiry is applied when it is read). Call after changing any of them."""
    lists: dict[str, list[str]] = {name: [] for name in _ATTRIBUTE_FIELDS}
    by_kind: dict[str, str] = {kind.value: name for name, kind in _ATTRIBUTE_FIELDS.items()}
    for kind, value in (
        TherapistAttribute.objects.filter(therapist=therapist)
        .order_by("kind", "position")
        .values_list("kind", "value")
    ):
        lists[by_kind[kind]].append(value)
    session_types = [
        {**row, "id": str(row["id"])}
        for row in SessionType.objects.filter(therapist=therapist, is_active=True)
        .order_by("price_minor", "name")
        .values(*CARD_SESSION_TYPE_FIELDS)
    ]
    licences = [
        {"jurisdiction": jurisdiction, "expires_on": expires_on.isoformat()}
        for jurisdiction, expires_on in Licence.objects.filter(
            therapist=therapist, verified_at__isnull=False
        )
        .order_by("jurisdiction")
        .values_list("jurisdiction", "expires_on")
    ]
    card = {**lists, "session_types": session_types, "licences": licences}
    TherapistProfile.objects.filter(pk=therapist.pk).update(card=card)
    therapist.card = card


@transaction.atomic
def therapist_profile_create(
    *, user: User, display_name: str, time_zone: str, now: datetime, **fields: Any
) -> TherapistProfile:
    """A therapist's profile (one per therapist user)."""
    if user.role != Role.THERAPIST:
        raise ConflictError("Only therapists have a therapist profile.", code="not_a_therapist")
    locked = User.objects.select_for_update().get(pk=user.pk)
    if TherapistProfile.objects.filter(user=locked).exists():
        raise ConflictError("You already have a profile.", code="profile_exists")
    profile = TherapistProfile(
        user=locked, display_name=display_name, time_zone=time_zone, created_at=now, updated_at=now
    )
    attributes = {k: fields.pop(k) for k in list(fields) if k in _ATTRIBUTE_FIELDS}
    for name, value in fields.items():
        setattr(profile, name, value)
    profile.save()
    _apply_profile_fields(profile, attributes)
    directory_card_refresh(therapist=profile)
    availability_summary_refresh(therapist=profile, now=now)
    return profile


@transaction.atomic
def therapist_profile_update(
    *, profile: TherapistProfile, fields: dict[str, Any], now: datetime
) -> TherapistProfile:
    """Change profile or settings fields (specialties/modalities/languages replace the list)."""
    profile = TherapistProfile.objects.select_for_update().get(pk=profile.pk)
    changed = _apply_profile_fields(profile, fields)
    profile.updated_at = now
    profile.save(update_fields=[*changed, "updated_at"])
    if set(_ATTRIBUTE_FIELDS) & set(fields):
        directory_card_refresh(therapist=profile)
    if {
        "time_zone",
        "buffer_before_minutes",
        "buffer_after_minutes",
        "min_notice_minutes",
        "horizon_days",
        "max_sessions_per_day",
        "slot_step_minutes",
    } & set(changed):
        availability_summary_refresh(therapist=profile, now=now)
    return profile


def open_slot_runs(starts: list[datetime], *, step: timedelta) -> list[tuple[datetime, datetime]]:
    """Sorted starts grouped into runs whose consecutive starts are at most ``step`` apart."""
    runs: list[tuple[datetime, datetime]] = []
    for s in starts:
        if runs and s - runs[-1][1] <= step:
            runs[-1] = (runs[-1][0], s)
        else:
            runs.append((s, s))
    return runs


def availability_summary_compute(
    *,
    schedule: slots.Schedule,
    durations: list[timedelta],
    busy: list[slots.Busy],
    now: datetime,
) -> list[datetime]:
    """Open starts of any of the session ``durations`` over the summary period (pure)."""
    end = now + timedelta(days=SUMMARY_DAYS)
    starts: set[datetime] = set()
    for duration in set(durations):
        starts.update(
            slots.open_slots(schedule, duration=duration, busy=busy, start=now, end=end, now=now)
        )
    return sorted(starts)


@transaction.atomic
def availability_summary_refresh(*, therapist: TherapistProfile, now: datetime) -> None:
    """Recompute the therapist's next open slot and open-slot runs for the directory.

    Call it (in the same transaction) after anything that changes open slots: rules,
    overrides, settings, session types, imported calendars, bookings and holds. It is also run
    for every therapist by ``manage.py refresh_availability``, since time passing moves the
    notice and horizon.
    """
    durations = [
        timedelta(minutes=m)
        for m in SessionType.objects.filter(therapist=therapist, is_active=True).values_list(
            "duration_minutes", flat=True
        )
    ]
    starts: list[datetime] = []
    if durations:
        schedule, busy = selectors.therapist_slot_inputs(
            therapist=therapist, start=now, end=now + timedelta(days=SUMMARY_DAYS), now=now
        )
        starts = availability_summary_compute(
            schedule=schedule, durations=durations, busy=busy, now=now
        )
    runs = open_slot_runs(starts, step=timedelta(minutes=therapist.slot_step_minutes))
    OpenSlotRun.objects.filter(therapist=therapist).delete()
    OpenSlotRun.objects.bulk_create(
        OpenSlotRun(therapist=therapist, first_start=a, last_start=b) for a, b in runs
    )
    next_open = starts[0] if starts else None
    TherapistProfile.objects.filter(pk=therapist.pk).update(
        next_open_slot=next_open,
        availability_rank=next_open or NO_OPEN_SLOT_RANK,
        availability_computed_at=now,
    )


def availability_summaries_refresh(*, now: datetime, max_age: timedelta | None) -> int:
    """The ``refresh_availability`` job: recompute the summaries older than ``max_age`` (all of
    them when None), since time passing moves notice and horizon on; the number refreshed.
    Idempotent: each summary is recomputed from the rules, calendars and bookings."""
    rows = TherapistProfile.objects.all()
    if max_age is not None:
        rows = rows.filter(
            Q(availability_computed_at__isnull=True) | Q(availability_computed_at__lt=now - max_age)
        )
    count = 0
    for therapist in rows.order_by("pk").iterator(chunk_size=200):
        availability_summary_refresh(therapist=therapist, now=now)
        count += 1
    return count
