"""``GET /api/v1/video/rooms/{booking_id}/attendance`` (docs/video.md, "Attendance"): what the
room recorded of a session, for its therapist and client and for compliance officers.

An ``AuditedMixin`` view on the booking: a read is one ``read`` event naming the booking and
its client (the route in the details); a refusal (401, 403, 404) one ``denied`` event.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.authentication import user_of
from api.serializers import problem_responses
from audit.mixins import AuditedMixin
from scheduling.models import Booking
from video.attendance import Span
from video.models import ParticipantRole
from video.selectors import BookingAttendance, booking_attendance_for


class SpanOut(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()


class PersonOut(serializers.Serializer):
    participant = serializers.UUIDField()
    role = serializers.ChoiceField(choices=ParticipantRole.choices)
    first_present_at = serializers.DateTimeField(
        allow_null=True, help_text="When their socket first held a place in the room"
    )
    present = SpanOut(many=True, help_text="Their socket held a place (waiting room or call)")
    in_call = SpanOut(many=True, help_text="In the call (admitted)")
    media = SpanOut(many=True, help_text="Their peer connection reported connected")


class AttendanceOut(serializers.Serializer):
    booking = serializers.UUIDField()
    room = serializers.UUIDField(allow_null=True, help_text="Null: nobody has joined yet")
    as_of = serializers.DateTimeField(help_text="Intervals still open are counted up to here")
    scheduled_start = serializers.DateTimeField()
    scheduled_end = serializers.DateTimeField()
    no_show_deadline = serializers.DateTimeField(
        help_text="Start + VIDEO_NO_SHOW_MINUTES: who has not come by then has not come"
    )
    attended_seconds = serializers.IntegerField(
        help_text="How long both sides' media were connected at once"
    )
    actual_start = serializers.DateTimeField(allow_null=True)
    actual_end = serializers.DateTimeField(allow_null=True)
    attended = SpanOut(many=True, help_text="The moments both were connected")
    participants = PersonOut(many=True)


def _spans(spans: list[Span]) -> list[dict[str, datetime]]:
    return [{"start": start, "end": end} for start, end in spans]


def attendance_payload(attendance: BookingAttendance, *, as_of: datetime) -> dict[str, Any]:
    booking, attended = attendance.booking, attendance.attended
    return {
        "booking": booking.pk,
        "room": attendance.room.pk if attendance.room is not None else None,
        "as_of": as_of,
        "scheduled_start": booking.start,
        "scheduled_end": booking.end,
        "no_show_deadline": attendance.no_show_deadline,
        "attended_seconds": attended.seconds,
        "actual_start": attended.actual_start,
        "actual_end": attended.actual_end,
        "attended": _spans(attended.spans),
        "participants": [
            {
                "participant": person.participant_id,
                "role": person.role,
                "first_present_at": person.first_present_at,
                "present": _spans(person.present),
                "in_call": _spans(person.in_call),
                "media": _spans(person.media),
            }
            for person in attendance.people
        ],
    }


class RoomAttendanceView(AuditedMixin, APIView):
    """What a booking's video room recorded: presence, admission, media, attended time."""

    audit_resource = "scheduling.booking"
    audit_lookup_kwarg = "booking_id"
    audit_models = (Booking,)

    @extend_schema(
        operation_id="video_room_attendance",
        summary="A video session's attendance",
        description="For the booking's client or therapist, and for compliance officers (roles, "
        "times and durations only: no names, no addresses). Each participant's intervals in "
        "server time: present (their socket held a place), in_call (admitted) and media (their "
        "peer connection reported connected, cross-checked with presence); the attended time "
        "is the overlap of the therapist's and the client's media, its first and last moments "
        "the session's actual start and end. Intervals still open count up to as_of. 404 "
        "booking_not_found for anyone else's booking (the same as a missing one); 409 no_video "
        "for an in-person session; staff without a second factor 403 mfa_required.",
        tags=["video"],
        responses={200: AttendanceOut, **problem_responses(401, 403, 404, 409)},
    )
    def get(self, request: Request, booking_id: uuid.UUID) -> Response:
        now = timezone.now()
        attendance = booking_attendance_for(user=user_of(request), booking_id=booking_id, now=now)
        return Response(AttendanceOut(attendance_payload(attendance, as_of=now)).data)
