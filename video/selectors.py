"""Video reads: a booking's attendance (docs/video.md, "Attendance").

``booking_attendance_for`` is the REST read (``GET /api/v1/video/rooms/{booking_id}/attendance``):
who may see it, and the booking noted as served for the view's audit event.

``booking_attendance`` gathers the room's intervals (``video.models.AttendanceInterval``) per
participant, closes the open ones at ``now`` for the arithmetic (nothing is written) and
computes the attended time with ``video.attendance``. Two queries: the room, then its
intervals with their participants.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings

from api.errors import ConflictError, NotFoundError
from api.models import Role, User
from audit.services import touch
from scheduling.models import Booking, Delivery
from video.attendance import Attended, Span, attended, merged, there_by
from video.models import AttendanceInterval, AttendanceKind, ParticipantRole, Room

# Deliveries whose sessions happen in a video room (and so have an attendance).
ROOM_DELIVERIES = (Delivery.VIDEO, Delivery.AUDIO)


@dataclass
class PersonAttendance:
    """One participant's merged intervals of each kind."""

    participant_id: uuid.UUID
    role: str
    present: list[Span] = field(default_factory=list)
    in_call: list[Span] = field(default_factory=list)
    media: list[Span] = field(default_factory=list)

    @property
    def first_present_at(self) -> datetime | None:
        return self.present[0][0] if self.present else None


@dataclass(frozen=True)
class BookingAttendance:
    """What the room recorded for a booking: per participant, and the attended time (the
    overlap of the therapist's and the client's media intervals)."""

    booking: Booking
    room: Room | None
    people: list[PersonAttendance]
    attended: Attended
    no_show_deadline: datetime  # start + VIDEO_NO_SHOW_MINUTES

    def of_role(self, role: str) -> PersonAttendance | None:
        return next((p for p in self.people if p.role == role), None)

    def there_by_deadline(self, role: str) -> bool:
        """Whether someone of ``role`` held a place in the room before the no-show deadline."""
        person = self.of_role(role)
        return person is not None and there_by(person.present, self.no_show_deadline)

    @property
    def recorded(self) -> bool:
        """Whether anyone's socket ever held a place in the room (else: no evidence at all)."""
        return any(p.present for p in self.people)


def no_show_deadline(*, booking: Booking) -> datetime:
    """When someone who has not come to the room yet counts as not having come."""
    return booking.start + timedelta(minutes=settings.VIDEO_NO_SHOW_MINUTES)


def booking_has_room(*, booking: Booking) -> bool:
    """Whether the booking's session happens in a video room (video or audio delivery)."""
    return booking.session_type.delivery in ROOM_DELIVERIES


def booking_attendance(*, booking: Booking, now: datetime) -> BookingAttendance:
    """The attendance of ``booking``'s room as of ``now`` (open intervals end at ``now``)."""
    room = Room.objects.filter(booking_id=booking.pk).first()
    people: dict[uuid.UUID, PersonAttendance] = {}
    spans: dict[tuple[uuid.UUID, str], list[Span]] = {}
    if room is not None:
        rows = (
            AttendanceInterval.objects.filter(participant__room=room)
            .select_related("participant")
            .order_by("started_at", "pk")
        )
        for row in rows:
            person = people.setdefault(
                row.participant_id,
                PersonAttendance(participant_id=row.participant_id, role=row.participant.role),
            )
            end = row.ended_at if row.ended_at is not None else max(now, row.started_at)
            spans.setdefault((person.participant_id, row.kind), []).append((row.started_at, end))
    for (participant_id, kind), found in spans.items():
        person = people[participant_id]
        if kind == AttendanceKind.PRESENT:
            person.present = merged(found)
        elif kind == AttendanceKind.IN_CALL:
            person.in_call = merged(found)
        else:
            person.media = merged(found)
    ordered = sorted(people.values(), key=lambda p: (p.role != ParticipantRole.THERAPIST, p.role))
    therapist = next((p for p in ordered if p.role == ParticipantRole.THERAPIST), None)
    client = next((p for p in ordered if p.role == ParticipantRole.CLIENT), None)
    return BookingAttendance(
        booking=booking,
        room=room,
        people=ordered,
        attended=attended(therapist.media if therapist else [], client.media if client else []),
        no_show_deadline=no_show_deadline(booking=booking),
    )


def booking_attendance_for(
    *, user: User, booking_id: uuid.UUID, now: datetime
) -> BookingAttendance:
    """``booking_attendance`` for someone allowed to see it: the booking's client or therapist,
    or a compliance officer (the record holds roles, times and durations only). Anyone else,
    and a booking that does not exist, is the same ``NotFoundError``; an in-person booking is
    ``NoVideo`` (409)."""
    booking = (
        Booking.objects.select_related("therapist", "session_type").filter(pk=booking_id).first()
    )
    allowed = booking is not None and (
        user.pk in (booking.client_id, booking.therapist.user_id)
        or user.role == Role.COMPLIANCE_OFFICER
    )
    if booking is None or not allowed:
        raise NotFoundError("No such booking.", code="booking_not_found")
    if not booking_has_room(booking=booking):
        raise ConflictError("This session is in person: it has no video room.", code="no_video")
    touch(booking)
    return booking_attendance(booking=booking, now=now)
