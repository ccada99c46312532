"""The therapist's no-show recorded from attendance (video.no_shows, ``manage.py
video_no_shows``, the ``video_no_shows`` job). SQLite and PostgreSQL."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pytest
from django.core.management import call_command

from audit.models import AuditEvent
from scheduling.bookings.services import booking_complete
from scheduling.models import Booking, BookingStatus, BookingTransition, FeeRequest
from tests.video.attendance_support import session, waited, was
from tests.video.signalling_support import Setup
from video.no_shows import therapist_no_shows_record

pytestmark = pytest.mark.django_db

MINUTE = timedelta(minutes=1)


@pytest.fixture
def start(fixed_clock: datetime) -> datetime:
    return fixed_clock.replace(second=0, microsecond=0) - 30 * MINUTE


def status(setup: Setup) -> str:
    return Booking.objects.get(pk=setup.room.booking_id).status


def test_the_client_waited_and_the_therapist_never_came(start: datetime, settings) -> None:
    """Past start + VIDEO_NO_SHOW_MINUTES: cancelled as the therapist's no-show by the system,
    a full refund and no fee, the room's evidence in the audit event. Run again: nothing."""
    setup = session(start)
    waited(setup.client, start - 2 * MINUTE, 20)
    deadline = start + settings.VIDEO_NO_SHOW_MINUTES * MINUTE

    assert therapist_no_shows_record(now=deadline - MINUTE) == 0  # they may still come
    assert status(setup) == BookingStatus.CONFIRMED

    assert therapist_no_shows_record(now=deadline) == 1

    assert status(setup) == BookingStatus.CANCELLED
    transition = BookingTransition.objects.filter(booking_id=setup.room.booking_id).last()
    assert transition is not None
    assert (transition.reason, transition.actor_id, transition.actor_label) == (
        "therapist_no_show",
        None,
        "system",
    )
    fee_request = FeeRequest.objects.get(booking_id=setup.room.booking_id)
    assert (fee_request.kind, fee_request.reason) == ("full_refund", "therapist_no_show")
    assert (fee_request.fee_minor, fee_request.refund_minor) == (0, 12000)
    audit = AuditEvent.objects.get(
        resource_id=str(setup.room.booking_id), action="therapist_no_show"
    )
    assert (audit.actor_id, audit.actor_label, audit.patient_id) == (
        None,
        "system",
        setup.client.user.pk,
    )
    assert audit.details == {
        "from": "confirmed",
        "to": "cancelled",
        "reason": "therapist_no_show",
        "attendance_recorded": True,
        "client_there_by_deadline": True,
        "therapist_there_by_deadline": False,
        "attended_seconds": 0,
        "actual_start": None,
        "actual_end": None,
    }

    assert therapist_no_shows_record(now=deadline + MINUTE) == 0
    assert FeeRequest.objects.filter(booking_id=setup.room.booking_id).count() == 1


def test_a_therapist_who_came_by_the_deadline_is_no_no_show(start: datetime) -> None:
    """Even one who came, waited in vain and left."""
    setup = session(start)
    was(setup.therapist, start + 14 * MINUTE, 0.5)
    waited(setup.client, start, 30)
    assert therapist_no_shows_record(now=start + 29 * MINUTE) == 0
    assert status(setup) == BookingStatus.CONFIRMED


def test_a_therapist_who_came_after_the_deadline_is_still_a_no_show(start: datetime) -> None:
    setup = session(start)
    waited(setup.client, start, 30)
    was(setup.therapist, start + 20 * MINUTE, 5)
    assert therapist_no_shows_record(now=start + 29 * MINUTE) == 1
    assert status(setup) == BookingStatus.CANCELLED


def test_nobody_came_records_nothing(start: datetime) -> None:
    """No evidence either way (the session may have been held elsewhere): nothing automatic."""
    setup = session(start)
    assert therapist_no_shows_record(now=start + 29 * MINUTE) == 0
    assert status(setup) == BookingStatus.CONFIRMED


def test_a_booking_already_settled_or_past_its_window_is_left_alone(
    start: datetime, settings
) -> None:
    """Completed by the therapist before the job ran, or its room window closed (older
    sessions are never judged by records they may not have)."""
    done = session(start)
    waited(done.client, start, 30)
    was(done.therapist, start + 1 * MINUTE, 20)
    was(done.client, start + 1 * MINUTE, 20)
    booking_complete(
        booking_id=done.room.booking_id, by=done.therapist.user, now=start + 25 * MINUTE
    )
    assert status(done) == BookingStatus.COMPLETED

    old = session(start - timedelta(days=1))
    waited(old.client, old.room.booking.start, 30)
    closes = old.room.booking.end + settings.VIDEO_ROOM_GRACE_MINUTES * MINUTE
    assert therapist_no_shows_record(now=max(closes, start + 20 * MINUTE)) == 0
    assert (status(done), status(old)) == (BookingStatus.COMPLETED, BookingStatus.CONFIRMED)


def test_the_command_runs_the_same_service(start: datetime) -> None:
    setup = session(start)
    waited(setup.client, start, 20)
    out = io.StringIO()
    call_command("video_no_shows", stdout=out)  # at the test clock: start + 30 minutes
    assert out.getvalue().strip() == "video_no_shows: 1 therapist no-shows recorded"
    assert status(setup) == BookingStatus.CANCELLED
