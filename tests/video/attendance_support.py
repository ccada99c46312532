"""Helpers for the attendance tests: a video booking with its room, and intervals written as
the signalling services write them (tests/video/test_signalling_attendance.py shows how)."""

from __future__ import annotations

from datetime import datetime, timedelta

from scheduling.models import Booking
from tests.video.signalling_support import Person, Setup, make_room
from video.models import AttendanceInterval, AttendanceKind, IntervalEnd


def session(start: datetime, *, price_minor: int = 12000) -> Setup:
    """A confirmed 50-minute video session at ``start`` (paid ``price_minor`` USD), its room
    and both people."""
    setup = make_room(start=start)
    Booking.objects.filter(pk=setup.room.booking_id).update(price_minor=price_minor, currency="USD")
    setup.room.booking.refresh_from_db()
    return setup


def was(
    person: Person,
    start: datetime,
    minutes: float,
    *,
    kinds: tuple[AttendanceKind, ...] = tuple(AttendanceKind),
) -> None:
    """``person`` was present, in the call and media-connected (or only ``kinds``) from
    ``start`` for ``minutes``."""
    for kind in kinds:
        AttendanceInterval.objects.create(
            participant=person.participant,
            kind=kind,
            started_at=start,
            ended_at=start + timedelta(minutes=minutes),
            end_reason=IntervalEnd.DETACHED,
        )


def waited(person: Person, start: datetime, minutes: float) -> None:
    """``person`` was in the waiting room (present, never in the call)."""
    was(person, start, minutes, kinds=(AttendanceKind.PRESENT,))
