"""A weekly or fortnightly series of bookings, booked in one transaction.

Every occurrence is judged by the same rules as a single booking (``rules.refusal``), in
order, each seeing the ones booked before it; the occurrences keep the first one's local wall
time across DST changes (``slots.weekly_starts``, beside the slot engine's own rule).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest

from api.errors import NotFoundError, UnprocessableError
from api.models import User
from scheduling import selectors as scheduling_selectors
from scheduling import slots
from scheduling.bookings import locks, notifications, rules, selectors
from scheduling.bookings.create import booking_insert, client_only
from scheduling.bookings.errors import SeriesConflicts
from scheduling.bookings.lifecycle import availability_changed, expire_holds, policy_of
from scheduling.models import (
    Booking,
    BookingSeries,
    NotificationKind,
    SeriesFrequency,
    TherapistProfile,
)

ON_CONFLICT_SKIP = "skip"
ON_CONFLICT_ABORT = "abort"


@dataclass(frozen=True, slots=True)
class Occurrence:
    index: int
    start: datetime
    end: datetime
    code: str = ""  # why it cannot be booked; empty when it can (or was)
    booking: Booking | None = None


@dataclass
class SeriesOutcome:
    series: BookingSeries | None
    occurrences: list[Occurrence] = field(default_factory=list)

    @property
    def booked(self) -> list[Occurrence]:
        return [o for o in self.occurrences if o.booking is not None]

    @property
    def conflicts(self) -> list[Occurrence]:
        return [o for o in self.occurrences if o.code]


def series_starts(
    *, first_start: datetime, zone: ZoneInfo, frequency: str, count: int
) -> list[datetime]:
    """The occurrences' UTC starts: the first one's local wall time in ``zone`` on every
    (or every other) week."""
    weeks = 1 if frequency == SeriesFrequency.WEEKLY else 2
    return slots.weekly_starts(first_start=first_start, zone=zone, weeks=weeks, count=count)


def _conflict_payload(occurrences: list[Occurrence]) -> list[dict[str, Any]]:
    return [
        {"index": o.index, "start": o.start.isoformat(), "code": o.code}
        for o in occurrences
        if o.code
    ]


@transaction.atomic
def booking_series_create(
    *,
    client: User,
    therapist_id: uuid.UUID,
    session_type_id: uuid.UUID,
    first_start: datetime,
    frequency: str,
    count: int,
    jurisdiction: str,
    on_conflict: str,
    dry_run: bool = False,
    request: HttpRequest | None = None,
    now: datetime,
) -> SeriesOutcome:
    """Book a weekly or fortnightly series (module docstring).

    Occurrences that cannot be booked are reported with their refusal's code;
    ``on_conflict="abort"`` then books none (409 ``series_conflicts`` listing them), ``"skip"``
    books the rest (409 when none is left). ``dry_run`` reports what would happen and writes
    nothing."""
    client_only(client)
    if not 1 <= count <= settings.BOOKING_SERIES_MAX_OCCURRENCES:
        raise UnprocessableError(
            f"A series has 1 to {settings.BOOKING_SERIES_MAX_OCCURRENCES} sessions.",
            code="series_too_long",
        )
    therapist: TherapistProfile | None
    if dry_run:
        therapist = TherapistProfile.objects.filter(pk=therapist_id).first()
    else:
        therapist = locks.lock_parties(client_id=client.pk, therapist_id=therapist_id)
    if therapist is None:
        raise NotFoundError("No such therapist.")
    session_type = scheduling_selectors.session_type_public_get(
        therapist=therapist, session_type_id=session_type_id
    )
    length = timedelta(minutes=session_type.duration_minutes)
    starts = series_starts(
        first_start=first_start,
        zone=ZoneInfo(therapist.time_zone),
        frequency=frequency,
        count=count,
    )
    outcome = SeriesOutcome(series=None)
    if not dry_run:
        expire_holds(therapist=therapist, now=now)
        outcome.series = BookingSeries.objects.create(
            client=client,
            therapist=therapist,
            frequency=frequency,
            requested_count=count,
            created_at=now,
        )
    policy = policy_of(therapist=therapist)
    for index, start in enumerate(starts):
        refusal = rules.refusal(
            selectors.booking_facts(
                client=client,
                therapist=therapist,
                session_type=session_type,
                start=start,
                jurisdiction=jurisdiction,
                now=now,
            )
        )
        booking = None
        if refusal is None and not dry_run:
            booking = booking_insert(
                client=client,
                therapist=therapist,
                session_type=session_type,
                policy=policy,
                start=start,
                jurisdiction=jurisdiction,
                series=outcome.series,
                request=request,
                now=now,
                emails=False,  # the series is announced once, below
            )
        code = refusal.value if refusal is not None else ""
        outcome.occurrences.append(Occurrence(index, start, start + length, code, booking))
    if dry_run:
        return outcome
    if outcome.conflicts and (on_conflict == ON_CONFLICT_ABORT or not outcome.booked):
        raise SeriesConflicts(  # rolls back the occurrences booked above
            "Some sessions of the series cannot be booked.",
            extra={"conflicts": _conflict_payload(outcome.occurrences)},
        )
    first = outcome.booked[0].booking
    assert first is not None and outcome.series is not None
    notifications.notify(
        bookings=[first],
        kind=NotificationKind.BOOKED,
        now=now,
        dedupe_key=f"{notifications.SERIES_KEY_PREFIX}{outcome.series.pk}",
    )
    availability_changed(therapist=therapist)
    return outcome
