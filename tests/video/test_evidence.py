"""What a video session's attendance lets the therapist record (video.evidence, called by
scheduling.bookings.services): the client's no-show and completion. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from audit.models import AuditEvent
from scheduling.bookings.services import booking_complete, booking_mark_no_show
from scheduling.models import Booking, BookingStatus, FeeRequest, SessionType
from tests.factories import api_client_for
from tests.video.attendance_support import session, waited, was
from video.evidence import ClientAttended, NoShowTooEarly, SessionNotAttended

pytestmark = pytest.mark.django_db

MINUTE = timedelta(minutes=1)


@pytest.fixture
def start(fixed_clock: datetime) -> datetime:
    return fixed_clock.replace(second=0, microsecond=0) - 30 * MINUTE


def event(booking: Booking, action: str) -> AuditEvent:
    return AuditEvent.objects.get(resource_id=str(booking.pk), action=action)


def unchanged(booking: Booking) -> None:
    assert Booking.objects.get(pk=booking.pk).status == BookingStatus.CONFIRMED
    assert not FeeRequest.objects.filter(booking=booking).exists()


def test_a_client_no_show_waits_for_the_deadline(start: datetime, settings) -> None:
    """Before start + VIDEO_NO_SHOW_MINUTES the client may still come: 409 with the time it is
    allowed from, nothing changed."""
    setup = session(start)
    booking = setup.room.booking
    deadline = start + settings.VIDEO_NO_SHOW_MINUTES * MINUTE
    with pytest.raises(NoShowTooEarly) as refused:
        booking_mark_no_show(booking_id=booking.pk, by=setup.therapist.user, now=deadline - MINUTE)
    assert refused.value.extra == {"allowed_from": deadline.isoformat().replace("+00:00", "Z")}
    unchanged(booking)


def test_a_client_who_came_by_the_deadline_cannot_be_marked_absent(start: datetime) -> None:
    """The client waited in the waiting room from minute 3 to 8 (the therapist never admitted
    them): they came, so no no-show fee, whenever the therapist asks."""
    setup = session(start)
    booking = setup.room.booking
    waited(setup.client, start + 3 * MINUTE, 5)
    with pytest.raises(ClientAttended):
        booking_mark_no_show(
            booking_id=booking.pk, by=setup.therapist.user, now=start + 40 * MINUTE
        )
    unchanged(booking)


def test_a_client_who_never_came_is_a_no_show_with_the_evidence_audited(start: datetime) -> None:
    """The therapist waited from the start; the client came 20 minutes late (past the
    deadline): the no-show is allowed, and its audit event says what the room saw."""
    setup = session(start)
    booking = setup.room.booking
    waited(setup.therapist, start, 25)
    waited(setup.client, start + 20 * MINUTE, 2)

    booking_mark_no_show(booking_id=booking.pk, by=setup.therapist.user, now=start + 25 * MINUTE)

    assert Booking.objects.get(pk=booking.pk).status == BookingStatus.NO_SHOW
    assert FeeRequest.objects.get(booking=booking).reason == "client_no_show"
    assert event(booking, "no_show").details == {
        "from": "confirmed",
        "to": "no_show",
        "reason": "no_show",
        "attendance_recorded": True,
        "client_there_by_deadline": False,
        "therapist_there_by_deadline": True,
        "attended_seconds": 0,
        "actual_start": None,
        "actual_end": None,
    }


def test_a_no_show_over_the_api_answers_the_refusal_as_problem_json(start: datetime) -> None:
    setup = session(start)
    booking = setup.room.booking
    waited(setup.client, start, 10)
    api = api_client_for(setup.therapist.user)
    response = api.post(f"/api/v1/bookings/{booking.pk}/no-show", {}, format="json")
    assert response.status_code == 409
    assert response["Content-Type"].startswith("application/problem+json")
    assert response.json()["code"] == "client_attended"
    unchanged(booking)


def test_completion_needs_attended_time(start: datetime, settings) -> None:
    """Both came, but their media were connected together for 30 s only: the room recorded no
    session (409 session_not_attended). With 40 minutes of overlap it completes, the actual
    start and end audited."""
    setup = session(start)
    booking = setup.room.booking
    was(setup.therapist, start, 10)
    was(setup.client, start + 9.5 * MINUTE, 10)
    assert settings.VIDEO_ATTENDED_MIN_SECONDS == 60
    with pytest.raises(SessionNotAttended):
        booking_complete(booking_id=booking.pk, by=setup.therapist.user, now=start + 50 * MINUTE)
    unchanged(booking)

    was(setup.therapist, start + 11 * MINUTE, 40)
    was(setup.client, start + 12 * MINUTE, 40)
    booking_complete(booking_id=booking.pk, by=setup.therapist.user, now=start + 55 * MINUTE)

    details = event(booking, "complete").details
    assert (details["attended_seconds"], details["actual_start"], details["actual_end"]) == (
        30 + 40 * 60,
        (start + 9.5 * MINUTE).isoformat().replace("+00:00", "Z"),
        (start + 51 * MINUTE).isoformat().replace("+00:00", "Z"),
    )


def test_completion_without_any_record_is_the_therapists_word(start: datetime) -> None:
    """Nobody ever connected to the room (the session was held elsewhere): completion is the
    therapist's to record, as before; the evidence says nothing was recorded."""
    setup = session(start)
    booking = setup.room.booking
    booking_complete(booking_id=booking.pk, by=setup.therapist.user, now=start + 50 * MINUTE)
    details = event(booking, "complete").details
    assert (details["attendance_recorded"], details["attended_seconds"]) == (False, 0)


def test_an_in_person_session_is_not_judged_by_a_room(start: datetime) -> None:
    setup = session(start)
    booking = setup.room.booking
    SessionType.objects.filter(pk=booking.session_type_id).update(delivery="in_person")
    waited(setup.client, start, 10)  # whatever a room says
    booking_mark_no_show(booking_id=booking.pk, by=setup.therapist.user, now=start)
    assert event(booking, "no_show").details == {
        "from": "confirmed",
        "to": "no_show",
        "reason": "no_show",
    }
