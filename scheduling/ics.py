"""iCalendar in and out, with no database: busy intervals from an ICS file, feeds to ICS.

In: events are expanded with ``recurring-ical-events`` (RRULE, RDATE, EXDATE, RECURRENCE-ID
overrides); transparent (free), cancelled and zero-length events block nothing; all-day events
and floating times are read in the therapist's zone. Anything malformed raises ``CalendarError``
before anything is stored.

Out: one VEVENT per booking with a stable UID, SEQUENCE, STATUS and UTC times.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events

PRODID = "-//Telehealth//Scheduling//EN"
PRODUCT = "Telehealth"  # the ORGANIZER's common name in invitations


class CalendarError(ValueError):
    """The file is not a calendar we can read; ``code`` is stable for the API."""

    def __init__(self, message: str, *, code: str = "calendar_malformed"):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Interval:
    start: datetime
    end: datetime


def _instant(value: date | datetime, zone: ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:  # floating time: the therapist's wall clock
            value = value.replace(tzinfo=zone)
        return value.astimezone(UTC)
    return datetime.combine(value, time(0), tzinfo=zone).astimezone(UTC)


def _blocks(event: icalendar.cal.Component) -> bool:
    if str(event.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT":
        return False
    if str(event.get("STATUS", "")).upper() == "CANCELLED":
        return False
    return str(event.get("X-MICROSOFT-CDO-BUSYSTATUS", "BUSY")).upper() != "FREE"


def _check_components(calendar: icalendar.Calendar) -> None:
    for component in calendar.walk("VEVENT"):
        if component.errors:
            raise CalendarError("The calendar has an event that cannot be read.")
        if component.get("DTSTART") is None:
            raise CalendarError("The calendar has an event without a start.")


def parse_busy(
    data: bytes,
    *,
    zone: ZoneInfo,
    window_start: datetime,
    window_end: datetime,
    max_intervals: int,
) -> list[Interval]:
    """The busy intervals of ``data`` that end after ``window_start`` and start before
    ``window_end``, in UTC, sorted by start."""
    try:
        calendar = icalendar.Calendar.from_ical(data)
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise CalendarError("The file is not a valid iCalendar file.") from exc
    if not isinstance(calendar, icalendar.Calendar) or calendar.name != "VCALENDAR":
        raise CalendarError("The file is not a VCALENDAR.")
    _check_components(calendar)

    intervals: list[Interval] = []
    try:
        for event in recurring_ical_events.of(calendar).after(window_start):
            start = _instant(event["DTSTART"].dt, zone)
            if start >= window_end:
                break
            if not _blocks(event):
                continue
            end = _instant(event["DTEND"].dt, zone) if "DTEND" in event else start
            if end <= start:
                continue
            intervals.append(Interval(start, end))
            if len(intervals) > max_intervals:
                raise CalendarError(
                    "The calendar expands to too many events.", code="calendar_too_many_events"
                )
    except recurring_ical_events.InvalidCalendar as exc:
        raise CalendarError("The calendar has a recurrence that cannot be read.") from exc
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        if isinstance(exc, CalendarError):
            raise
        raise CalendarError("The calendar has an event that cannot be read.") from exc
    intervals.sort(key=lambda i: (i.start, i.end))
    return intervals


@dataclass(frozen=True, slots=True)
class FeedEvent:
    uid: str
    start: datetime
    end: datetime
    summary: str
    status: str  # RFC 5545 VEVENT status: TENTATIVE (held), CONFIRMED or CANCELLED
    sequence: int
    stamp: datetime


@dataclass(frozen=True, slots=True)
class Invitation:
    """Who an iTIP message (RFC 5546 ``REQUEST``/``CANCEL``) is from and to: both are required
    there, and mail clients (Outlook, Gmail) match the invitation to the calendar by them."""

    organizer: str  # the service's sender address
    attendee: str  # the recipient's address


def render_calendar(
    events: Iterable[FeedEvent],
    *,
    name: str,
    method: str = "PUBLISH",
    refresh: timedelta,
    invitation: Invitation | None = None,
) -> bytes:
    """An ICS document of ``events``, times in UTC; an ``invitation`` adds ORGANIZER and
    ATTENDEE to each event."""
    calendar = icalendar.Calendar()
    calendar.add("PRODID", PRODID)
    calendar.add("VERSION", "2.0")
    calendar.add("CALSCALE", "GREGORIAN")
    calendar.add("METHOD", method)
    calendar.add("X-WR-CALNAME", name)
    calendar.add("REFRESH-INTERVAL", refresh, parameters={"VALUE": "DURATION"})
    calendar.add("X-PUBLISHED-TTL", refresh)
    for item in events:
        event = icalendar.Event()
        event.add("UID", item.uid)
        event.add("DTSTAMP", item.stamp.astimezone(UTC))
        event.add("DTSTART", item.start.astimezone(UTC))
        event.add("DTEND", item.end.astimezone(UTC))
        event.add("SUMMARY", item.summary)
        event.add("SEQUENCE", item.sequence)
        event.add("STATUS", item.status)
        event.add("TRANSP", "OPAQUE")
        if invitation is not None:
            event.add("ORGANIZER", f"mailto:{invitation.organizer}", parameters={"CN": PRODUCT})
            event.add(
                "ATTENDEE",
                f"mailto:{invitation.attendee}",
                parameters={
                    "ROLE": "REQ-PARTICIPANT",
                    "PARTSTAT": "DECLINED" if method == "CANCEL" else "ACCEPTED",
                    "RSVP": "FALSE",
                },
            )
        calendar.add_component(event)
    return bytes(calendar.to_ical())
