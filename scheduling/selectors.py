"""Reads: the slot engine's inputs from the database, the directory, profiles and feeds.

The booking code re-checks a slot with ``slot_is_open`` (the same path as the slot list) and
adds nothing else: bookings and holds are busy through ``therapist_slot_inputs``.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Collection
from datetime import date, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from django.db.models import (
    DateField,
    DateTimeField,
    Exists,
    F,
    IntegerField,
    Model,
    OuterRef,
    Q,
    QuerySet,
    Value,
)
from django.db.models.functions import Cast

from api import crypto
from api.compiled import CompiledRead
from api.errors import NotFoundError
from api.models import User
from scheduling import slots
from scheduling.models import (
    AvailabilityOverride,
    AvailabilityRule,
    Booking,
    BookingStatus,
    CalendarFeedToken,
    ExternalBusyInterval,
    ExternalCalendar,
    Licence,
    OverrideKind,
    SessionType,
    TherapistProfile,
)

# Sessions in these states block time (a hold only until it expires).
M = TypeVar("M", bound=Model)
BLOCKING_STATUSES = (BookingStatus.CONFIRMED, BookingStatus.COMPLETED, BookingStatus.NO_SHOW)
# How far around a range bookings are read, so the daily maximum sees whole local days.
_DAY_MARGIN = timedelta(days=2)


_WEEKLY = "weekly"  # marks the weekly rules' rows beside the overrides' kinds
_BUSY = "busy"  # and the busy intervals' rows
_COLUMNS = (
    *("kind", "weekday", "first_date", "last_date", "start_minute", "end_minute"),
    *("busy_start", "busy_end", "session_start"),
)


def _slot_input_rows(
    *,
    therapist_id: uuid.UUID,
    start: datetime,
    end: datetime,
    now: datetime,
    exclude_booking_ids: Collection[uuid.UUID] = (),
) -> QuerySet[AvailabilityRule, tuple[Any, ...]]:
    """Everything the slot engine reads, in one UNION ALL query of ``_COLUMNS`` rows: the
    therapist's weekly rules and overrides, then what is busy around ``[start, end)``: bookings
    and unexpired holds by their blocked range (with their start), and imported busy times (no
    session start: not a session)."""
    # Typed, since PostgreSQL types a UNION's columns branch by branch and an untyped NULL in
    # the first two would be taken for text.
    no_date = Cast(Value(None), output_field=DateField())
    no_number = Cast(Value(None), output_field=IntegerField())
    no_time = Cast(Value(None), output_field=DateTimeField())
    not_busy = {"busy_start": no_time, "busy_end": no_time, "session_start": no_time}
    not_hours = {"first_date": no_date, "last_date": no_date, "weekday": no_number}
    rules = (
        AvailabilityRule.objects.filter(therapist_id=therapist_id)
        .annotate(kind=Value(_WEEKLY), first_date=no_date, last_date=no_date, **not_busy)
        .values_list(*_COLUMNS)
    )
    overrides = (
        AvailabilityOverride.objects.filter(therapist_id=therapist_id)
        .annotate(weekday=no_number, **not_busy)
        .values_list(*_COLUMNS)
    )
    live = Q(status__in=BLOCKING_STATUSES) | Q(status=BookingStatus.HELD, hold_expires_at__gt=now)
    bookings = Booking.objects.filter(
        live, therapist_id=therapist_id, blocked_start__lt=end
    ).filter(blocked_end__gt=start)
    if exclude_booking_ids:
        bookings = bookings.exclude(pk__in=list(exclude_booking_ids))
    busy = {"kind": Value(_BUSY), **not_hours, "start_minute": no_number, "end_minute": no_number}
    booked = bookings.annotate(
        **busy, busy_start=F("blocked_start"), busy_end=F("blocked_end"), session_start=F("start")
    ).values_list(*_COLUMNS)
    imported = (
        ExternalBusyInterval.objects.filter(therapist_id=therapist_id, start__lt=end, end__gt=start)
        .annotate(**busy, busy_start=F("start"), busy_end=F("end"), session_start=no_time)
        .values_list(*_COLUMNS)
    )
    return rules.union(overrides, booked, imported, all=True)


# On every slot list and booking: built and compiled once (docs/adr/0004-compiled-statements.md).
_SLOT_INPUT_ROWS = CompiledRead(_slot_input_rows)


def therapist_slot_inputs(
    *,
    therapist: TherapistProfile,
    start: datetime,
    end: datetime,
    now: datetime,
    exclude_booking_ids: Collection[uuid.UUID] = (),
) -> tuple[slots.Schedule, list[slots.Busy]]:
    """The slot engine's view of a therapist for starts in ``[start, end)``: their rules,
    overrides and settings, and every busy interval (bookings and holds with ``session_start``
    set, and imported busy times), read in one query."""
    lo, hi = start - _DAY_MARGIN, end + _DAY_MARGIN
    rows = (
        _slot_input_rows(
            therapist_id=therapist.pk, start=lo, end=hi, now=now, exclude_booking_ids=ids
        )
        if (ids := list(exclude_booking_ids))
        else _SLOT_INPUT_ROWS.list(therapist_id=therapist.pk, start=lo, end=hi, now=now)
    )
    weekly: list[slots.WeeklyWindow] = []
    extra: list[slots.ExtraHours] = []
    time_off: list[slots.TimeOff] = []
    busy: list[slots.Busy] = []
    for kind, weekday, first, last, start_minute, end_minute, busy_start, busy_end, at in rows:
        if kind == _BUSY:
            busy.append(slots.Busy(busy_start, busy_end, session_start=at))
        elif kind == _WEEKLY:
            weekly.append(slots.WeeklyWindow(weekday, start_minute, end_minute))
        elif kind == OverrideKind.EXTRA:
            assert start_minute is not None and end_minute is not None
            extra.append(slots.ExtraHours(first, start_minute, end_minute))
        else:
            time_off.append(slots.TimeOff(first, last))
    schedule = slots.Schedule(
        zone=ZoneInfo(therapist.time_zone),
        weekly=weekly,
        extra=extra,
        time_off=time_off,
        policy=slots.Policy(
            buffer_before=timedelta(minutes=therapist.buffer_before_minutes),
            buffer_after=timedelta(minutes=therapist.buffer_after_minutes),
            min_notice=timedelta(minutes=therapist.min_notice_minutes),
            horizon=timedelta(days=therapist.horizon_days),
            max_per_day=therapist.max_sessions_per_day,
            step=timedelta(minutes=therapist.slot_step_minutes),
        ),
    )
    return schedule, busy


def therapist_open_slots(
    *,
    therapist: TherapistProfile,
    session_type: SessionType,
    start: datetime,
    end: datetime,
    now: datetime,
    exclude_booking_ids: Collection[uuid.UUID] = (),
) -> list[datetime]:
    """Bookable UTC starts of ``session_type`` in ``[start, end)`` at ``now``."""
    schedule, busy = therapist_slot_inputs(
        therapist=therapist, start=start, end=end, now=now, exclude_booking_ids=exclude_booking_ids
    )
    return slots.open_slots(
        schedule,
        duration=timedelta(minutes=session_type.duration_minutes),
        busy=busy,
        start=start,
        end=end,
        now=now,
    )


def slot_is_open(
    *,
    therapist: TherapistProfile,
    session_type: SessionType,
    start: datetime,
    now: datetime,
    exclude_booking_ids: Collection[uuid.UUID] = (),
) -> bool:
    """Whether ``start`` is offered right now: the slot list over ``[start, start + 1 s)``.

    The booking code calls this inside its write transaction, after locking the therapist.
    """
    return start in therapist_open_slots(
        therapist=therapist,
        session_type=session_type,
        start=start,
        end=start + timedelta(seconds=1),
        now=now,
        exclude_booking_ids=exclude_booking_ids,
    )


def current_licences(*, today: date) -> QuerySet[Licence]:
    """Licences an admin verified that have not expired on ``today`` (UTC date)."""
    return Licence.objects.filter(verified_at__isnull=False, expires_on__gte=today)


def _licence_in(*, therapist_id: uuid.UUID, jurisdiction: str, today: date) -> QuerySet[Any]:
    return licences_in(therapist=therapist_id, jurisdiction=jurisdiction, today=today).values_list(
        "pk"
    )[:1]


# On every client's join of a video room (docs/adr/0004-compiled-statements.md).
_LICENCE_IN = CompiledRead(_licence_in)


def therapist_is_licensed_in(
    *, therapist: TherapistProfile, jurisdiction: str, today: date
) -> bool:
    """May a client located in ``jurisdiction`` book this therapist on ``today``?"""
    found = _LICENCE_IN.first(therapist_id=therapist.pk, jurisdiction=jurisdiction, today=today)
    return found is not None


def licences_in(
    *, therapist: TherapistProfile | uuid.UUID | OuterRef, jurisdiction: str, today: date
) -> QuerySet[Licence]:
    """The therapist's current licences for ``jurisdiction`` on ``today`` (the booking code
    tests their existence inside a query of its own, hence a therapist as an ``OuterRef``)."""
    return current_licences(today=today).filter(Q(therapist=therapist), jurisdiction=jurisdiction)


def listed_therapists(*, now: datetime) -> QuerySet[TherapistProfile]:
    """Therapists the public may see: at least one current (verified, unexpired) licence."""
    licensed = current_licences(today=now.date()).filter(therapist=OuterRef("pk"))
    return TherapistProfile.objects.filter(Exists(licensed))


def directory_queryset(*, now: datetime) -> QuerySet[TherapistProfile]:
    """The directory before filters, ordered by soonest availability. A row carries what it
    shows (the directory card), so a page is one query."""
    return listed_therapists(now=now).order_by("availability_rank", "id")


def therapist_public_get(*, therapist_id: uuid.UUID, now: datetime) -> TherapistProfile:
    therapist = directory_queryset(now=now).filter(pk=therapist_id).first()
    if therapist is None:
        raise NotFoundError("No such therapist.")
    return therapist


class SessionTypeNotFound(NotFoundError):
    code = "session_type_not_found"
    default_detail = "No such session type for this therapist."


def session_type_public_get(
    *, therapist: TherapistProfile, session_type_id: uuid.UUID
) -> SessionType:
    session_type = SessionType.objects.filter(
        therapist=therapist, pk=session_type_id, is_active=True
    ).first()
    if session_type is None:
        raise SessionTypeNotFound()
    return session_type


def therapist_profile_of(*, user: User) -> TherapistProfile:
    """The caller's own profile (404 until they create it)."""
    profile = TherapistProfile.objects.filter(user=user).first()
    if profile is None:
        raise NotFoundError("Create your therapist profile first.", code="profile_not_found")
    return profile


def own_row(model: type[M], *, therapist: TherapistProfile, pk: uuid.UUID) -> M:
    """One of the therapist's own rows of ``model``; another therapist's id is a plain 404 (no
    oracle)."""
    row = model._default_manager.filter(therapist=therapist, pk=pk).first()
    if row is None:
        raise NotFoundError()
    return row


def own_session_types(*, therapist: TherapistProfile) -> QuerySet[SessionType]:
    return SessionType.objects.filter(therapist=therapist).order_by("created_at")


def own_rules(*, therapist: TherapistProfile) -> QuerySet[AvailabilityRule]:
    return AvailabilityRule.objects.filter(therapist=therapist).order_by("weekday", "start_minute")


def own_overrides(*, therapist: TherapistProfile) -> QuerySet[AvailabilityOverride]:
    return AvailabilityOverride.objects.filter(therapist=therapist).order_by(
        "first_date", "start_minute"
    )


def own_licences(*, therapist: TherapistProfile) -> QuerySet[Licence]:
    return Licence.objects.filter(therapist=therapist).order_by("jurisdiction")


def licences_for_review(*, verified: bool | None) -> QuerySet[Licence]:
    """Every licence, or only the verified (or the unverified: the admins' queue) ones."""
    rows = Licence.objects.all()
    return rows if verified is None else rows.filter(verified_at__isnull=not verified)


def feed_tokens_of(*, owner: User) -> QuerySet[CalendarFeedToken]:
    return CalendarFeedToken.objects.filter(owner=owner).order_by("created_at")


def own_calendars(*, therapist: TherapistProfile) -> QuerySet[ExternalCalendar]:
    return ExternalCalendar.objects.filter(therapist=therapist).order_by("created_at", "id")


def bookings_for_feed(*, owner: User, now: datetime) -> QuerySet[Booking]:
    """What a user's calendar feed shows: their sessions from 90 days ago on, holds excluded."""
    since = now - timedelta(days=90)
    mine = Q(client=owner) | Q(therapist__user=owner)
    return (
        Booking.objects.filter(mine, start__gte=since)
        .exclude(status=BookingStatus.HELD)
        .select_related("client", "therapist")
        .order_by("start", "id")
    )


FEED_LOOKUP_CHARS = 16
FEED_TOKEN_PURPOSE = "scheduling.calendar_feed"  # noqa: S105 - an HMAC domain label


def calendar_feed_token_owner(*, presented: str) -> User | None:
    """The owner of a live feed token, or None. The secret is compared in constant time, and
    an unknown lookup costs the same hash and comparison."""
    lookup, secret = presented[:FEED_LOOKUP_CHARS], presented[FEED_LOOKUP_CHARS:]
    row = (
        CalendarFeedToken.objects.select_related("owner")
        .filter(lookup=lookup, revoked_at__isnull=True)
        .first()
    )
    expected = row.secret_hash if row is not None else "0" * 64
    matches = hmac.compare_digest(crypto.keyed_hash(secret, purpose=FEED_TOKEN_PURPOSE), expected)
    if row is None or not matches or not row.owner.is_active:
        return None
    return row.owner
