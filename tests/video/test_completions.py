"""Video sessions completed from their attendance (video.completions, ``manage.py
video_completions``, the ``video_completions`` job). SQLite and PostgreSQL."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pytest
from django.core.management import call_command

from audit.models import AuditEvent
from scheduling.models import Booking, BookingStatus, BookingTransition
from tests.video.attendance_support import session, waited, was
from tests.video.signalling_support import Setup
from video.completions import LOOKBACK, attended_sessions_complete
from video.models import Room

pytestmark = pytest.mark.django_db

MINUTE = timedelta(minutes=1)


@pytest.fixture
def start(fixed_clock: datetime) -> datetime:
    return fixed_clock.replace(second=0, microsecond=0) - 30 * MINUTE


def status(setup: Setup) -> str:
    return Booking.objects.get(pk=setup.room.booking_id).status


def closes(setup: Setup, settings) -> datetime:
    return setup.room.booking.end + settings.VIDEO_ROOM_GRACE_MINUTES * MINUTE


def test_an_attended_session_is_completed_once_its_window_closes(start: datetime, settings) -> None:
    """By the system, with the attended time and actual start and end audited (billing pays
    out completed sessions). Run again: nothing."""
    setup = session(start)
    was(setup.therapist, start - 2 * MINUTE, 50)
    was(setup.client, start + 1 * MINUTE, 45)

    assert attended_sessions_complete(now=closes(setup, settings) - MINUTE) == 0
    assert attended_sessions_complete(now=closes(setup, settings)) == 1

    assert status(setup) == BookingStatus.COMPLETED
    transition = BookingTransition.objects.filter(booking_id=setup.room.booking_id).last()
    assert transition is not None
    assert (transition.to_status, transition.actor_id, transition.actor_label) == (
        "completed",
        None,
        "system",
    )
    details = AuditEvent.objects.get(
        resource_id=str(setup.room.booking_id), action="complete"
    ).details
    assert (details["attended_seconds"], details["actual_start"], details["actual_end"]) == (
        45 * 60,
        (start + 1 * MINUTE).isoformat().replace("+00:00", "Z"),
        (start + 46 * MINUTE).isoformat().replace("+00:00", "Z"),
    )
    assert attended_sessions_complete(now=closes(setup, settings) + MINUTE) == 0


def test_a_room_the_therapist_ended_is_completed_at_once(start: datetime) -> None:
    setup = session(start)
    was(setup.therapist, start, 20)
    was(setup.client, start, 20)
    Room.objects.filter(pk=setup.room.pk).update(
        ended_at=start + 20 * MINUTE, end_reason="ended_by_therapist"
    )
    assert attended_sessions_complete(now=start + 21 * MINUTE) == 1
    assert status(setup) == BookingStatus.COMPLETED


def test_too_little_attended_time_or_none_recorded_is_left_to_the_therapist(
    start: datetime, settings
) -> None:
    """Both came, but were connected together for 30 s; or only the client came; or nobody
    connected at all: the booking stays confirmed."""
    short, alone, nobody = session(start), session(start), session(start)
    was(short.therapist, start, 10)
    was(short.client, start + 9.5 * MINUTE, 10)
    waited(alone.client, start, 20)
    now = closes(short, settings)
    assert attended_sessions_complete(now=now) == 0
    assert {status(s) for s in (short, alone, nobody)} == {BookingStatus.CONFIRMED}


def test_a_session_over_for_longer_than_the_lookback_is_never_judged(
    start: datetime, settings
) -> None:
    setup = session(start)
    was(setup.therapist, start, 45)
    was(setup.client, start, 45)
    assert attended_sessions_complete(now=closes(setup, settings) + LOOKBACK) == 0
    assert status(setup) == BookingStatus.CONFIRMED


def test_the_command_runs_the_same_service(start: datetime, settings) -> None:
    setup = session(start - timedelta(hours=2))
    was(setup.therapist, setup.room.booking.start, 45)
    was(setup.client, setup.room.booking.start, 45)
    out = io.StringIO()
    call_command("video_completions", stdout=out)  # the test clock: its window has closed
    assert out.getvalue().strip() == "video_completions: 1 sessions completed"
    assert status(setup) == BookingStatus.COMPLETED
