"""Imported calendars: uploaded ICS files and subscribed URLs (encrypted at rest), expanded
into busy intervals, and the sync job that refreshes subscriptions.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from api import crypto
from api.errors import DomainError
from scheduling import fetch, ics
from scheduling.models import (
    CalendarSource,
    ExternalBusyInterval,
    ExternalCalendar,
    TherapistProfile,
)
from scheduling.services.directory import availability_summary_refresh

# How far ahead imported calendars are expanded.
EXPAND_DAYS = 370
MAX_BUSY_PER_CALENDAR = 5_000  # expanding costs ~1 ms per occurrence
_URL_AAD = b"scheduling.calendar.url"
_CONTENT_AAD = b"scheduling.calendar.content"


class CalendarRefused(DomainError):
    """An ICS upload or URL we cannot use (400); nothing was stored."""

    code = "calendar_malformed"


class CalendarTooLarge(CalendarRefused):
    status_code = 413
    code = "calendar_too_large"
    title = "Payload too large"


def _busy_from(data: bytes, *, zone: ZoneInfo, now: datetime) -> list[ics.Interval]:
    if len(data) > settings.CALENDAR_MAX_BYTES:
        raise CalendarTooLarge("The calendar file is too large.")
    try:
        return ics.parse_busy(
            data,
            zone=zone,
            window_start=now - timedelta(days=1),
            window_end=now + timedelta(days=EXPAND_DAYS),
            max_intervals=MAX_BUSY_PER_CALENDAR,
        )
    except ics.CalendarError as exc:
        raise CalendarRefused(str(exc), code=exc.code) from exc


def _store_busy(calendar: ExternalCalendar, intervals: list[ics.Interval]) -> None:
    ExternalBusyInterval.objects.filter(calendar=calendar).delete()
    ExternalBusyInterval.objects.bulk_create(
        (
            ExternalBusyInterval(
                calendar=calendar, therapist_id=calendar.therapist_id, start=i.start, end=i.end
            )
            for i in intervals
        ),
        batch_size=1000,
    )


@transaction.atomic
def external_calendar_upload(
    *, profile: TherapistProfile, name: str, content: bytes, now: datetime
) -> ExternalCalendar:
    """An uploaded ICS file as a busy calendar; a malformed or huge file stores nothing."""
    intervals = _busy_from(content, zone=ZoneInfo(profile.time_zone), now=now)
    calendar = ExternalCalendar.objects.create(
        therapist=profile,
        name=name,
        source=CalendarSource.UPLOAD,
        content_encrypted=crypto.encrypt(content.decode("utf-8"), associated_data=_CONTENT_AAD),
        content_sha256=hashlib.sha256(content).hexdigest(),
        last_synced_at=now,
        next_sync_at=now + timedelta(days=1),  # re-expanded daily as the window moves
        created_at=now,
    )
    _store_busy(calendar, intervals)
    availability_summary_refresh(therapist=profile, now=now)
    return calendar


@transaction.atomic
def external_calendar_subscribe(
    *, profile: TherapistProfile, name: str, url: str, now: datetime
) -> ExternalCalendar:
    """A calendar URL that ``sync_calendars`` fetches (first at its next run)."""
    try:
        target = fetch.parse_url(url)
        fetch.resolve(target)  # checked again at every fetch (the name may be rebound)
    except fetch.FetchError as exc:
        raise CalendarRefused("This calendar address cannot be used.", code=exc.code) from exc
    return ExternalCalendar.objects.create(
        therapist=profile,
        name=name,
        source=CalendarSource.URL,
        url_encrypted=crypto.encrypt(url.strip(), associated_data=_URL_AAD),
        url_host=target.host,
        next_sync_at=now,
        created_at=now,
    )


@transaction.atomic
def external_calendar_delete(*, calendar: ExternalCalendar, now: datetime) -> None:
    therapist = calendar.therapist
    calendar.delete()
    availability_summary_refresh(therapist=therapist, now=now)


def external_calendar_claim(*, calendar_id: uuid.UUID, now: datetime, lease: timedelta) -> bool:
    """Claim a due calendar for syncing (conditional update: one claimant wins)."""
    due = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    return (
        ExternalCalendar.objects.filter(due, pk=calendar_id, next_sync_at__lte=now).update(
            claimed_until=now + lease
        )
        == 1
    )


def external_calendar_sync(*, calendar_id: uuid.UUID, now: datetime) -> str:
    """Fetch (URL) or re-read (upload) a claimed calendar and replace its busy times.

    Returns ``"ok"`` or an error code; on error the previous busy times stay as they were.
    The network fetch happens outside any transaction.
    """
    calendar = ExternalCalendar.objects.select_related("therapist").get(pk=calendar_id)
    zone = ZoneInfo(calendar.therapist.time_zone)
    try:
        if calendar.source == CalendarSource.URL:
            url = crypto.decrypt(calendar.url_encrypted, associated_data=_URL_AAD)
            data = fetch.fetch(
                url,
                max_bytes=settings.CALENDAR_MAX_BYTES,
                timeout=settings.CALENDAR_FETCH_TIMEOUT_SECONDS,
            )
        else:
            data = crypto.decrypt(calendar.content_encrypted, associated_data=_CONTENT_AAD).encode()
        intervals = _busy_from(data, zone=zone, now=now)
    except (fetch.FetchError, CalendarRefused) as exc:
        ExternalCalendar.objects.filter(pk=calendar.pk).update(
            last_error=exc.code[:64],
            claimed_until=None,
            next_sync_at=now + timedelta(minutes=settings.CALENDAR_SYNC_INTERVAL_MINUTES),
        )
        return exc.code
    interval = (
        timedelta(minutes=settings.CALENDAR_SYNC_INTERVAL_MINUTES)
        if calendar.source == CalendarSource.URL
        else timedelta(days=1)
    )
    with transaction.atomic():
        _store_busy(calendar, intervals)
        ExternalCalendar.objects.filter(pk=calendar.pk).update(
            last_error="",
            last_synced_at=now,
            claimed_until=None,
            next_sync_at=now + interval,
            content_sha256=hashlib.sha256(data).hexdigest(),
        )
        availability_summary_refresh(therapist=calendar.therapist, now=now)
    return "ok"


def external_calendars_sync_due(
    *, now: datetime, limit: int = 500, lease: timedelta = timedelta(minutes=10)
) -> dict[str, int]:
    """The ``sync_calendars`` job: sync up to ``limit`` due calendars, each claimed first (a
    conditional update), so runs on several machines never fetch one twice; outcome counts."""
    due = ExternalCalendar.objects.filter(next_sync_at__lte=now).order_by("next_sync_at")
    outcomes: dict[str, int] = {}
    for calendar_id in due.values_list("id", flat=True)[:limit]:
        if not external_calendar_claim(calendar_id=calendar_id, now=now, lease=lease):
            continue  # another worker has it
        outcome = external_calendar_sync(calendar_id=calendar_id, now=now)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes
