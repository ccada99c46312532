"""What a booking's attendance lets the booking services do (docs/video.md, "Attendance").

Registered from ``video.apps`` in ``scheduling.bookings.contributions`` (scheduling may not
import video) and called by the booking services with the booking locked and confirmed, before
it changes status; each check raises a refusal or returns the evidence that goes into the
change's audit details (booleans, seconds and instants: no names, no addresses). For a booking
without a room (in person) every check passes with no evidence.

- **The client's no-show** (``booking_mark_no_show``): not before the no-show deadline (start +
  ``VIDEO_NO_SHOW_MINUTES``: 409 ``no_show_too_early`` with ``allowed_from``), and refused
  (409 ``client_attended``) when the client's socket held a place in the room (waiting room or
  call) before that deadline: a client the therapist left waiting came.
- **Completion** (``booking_complete``): refused (409 ``session_not_attended``) when the room
  recorded someone but the overlap of both sides' media is under ``VIDEO_ATTENDED_MIN_SECONDS``;
  with no attendance recorded at all (nobody ever connected: the session was held elsewhere)
  the therapist's word stands, as before, and the evidence says so.
- **The therapist's no-show** is recorded by ``video.no_shows`` from the same facts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from api.errors import ConflictError
from scheduling.models import Booking
from video.models import ParticipantRole
from video.selectors import BookingAttendance, booking_attendance, booking_has_room

CLIENT = ParticipantRole.CLIENT
THERAPIST = ParticipantRole.THERAPIST


class NoShowTooEarly(ConflictError):
    code = "no_show_too_early"

    def __init__(self, allowed_from: datetime) -> None:
        super().__init__(
            "The client may still come: a no-show can be recorded from the deadline on.",
            extra={"allowed_from": _iso(allowed_from)},
        )


class ClientAttended(ConflictError):
    code = "client_attended"
    default_detail = "The client was in the room before the no-show deadline."


class SessionNotAttended(ConflictError):
    code = "session_not_attended"
    default_detail = (
        "The room recorded no session: both sides were not connected long enough at once."
    )


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def attendance_details(attendance: BookingAttendance) -> dict[str, Any]:
    """The evidence for an audit event: who was there by the deadline, the attended time and
    its first and last moments."""
    attended = attendance.attended
    return {
        "attendance_recorded": attendance.recorded,
        "client_there_by_deadline": attendance.there_by_deadline(CLIENT),
        "therapist_there_by_deadline": attendance.there_by_deadline(THERAPIST),
        "attended_seconds": attended.seconds,
        "actual_start": _iso(attended.actual_start) if attended.actual_start else None,
        "actual_end": _iso(attended.actual_end) if attended.actual_end else None,
    }


def client_no_show_evidence(*, booking: Booking, now: datetime) -> dict[str, Any]:
    """May the therapist record the client's no-show now? The evidence, or a refusal."""
    if not booking_has_room(booking=booking):
        return {}
    attendance = booking_attendance(booking=booking, now=now)
    if now < attendance.no_show_deadline:
        raise NoShowTooEarly(attendance.no_show_deadline)
    if attendance.there_by_deadline(CLIENT):
        raise ClientAttended()
    return attendance_details(attendance)


def completion_evidence(*, booking: Booking, now: datetime) -> dict[str, Any]:
    """May the session be completed now? The evidence, or a refusal."""
    if not booking_has_room(booking=booking):
        return {}
    attendance = booking_attendance(booking=booking, now=now)
    if attendance.recorded and attendance.attended.seconds < settings.VIDEO_ATTENDED_MIN_SECONDS:
        raise SessionNotAttended()
    return attendance_details(attendance)
