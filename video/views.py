"""The join endpoint (docs/video.md, "Join"): a thin view over ``video.services.room_join``.

An ``AuditedMixin`` view on the booking: the request runs in one transaction with the join's
``video.room.joined`` event; a refusal (401, 403, 404 or 409) rolls it back and is recorded as
``video.room.join_denied`` (outcome ``denied``, the problem's code as ``reason``).
"""

from __future__ import annotations

import uuid

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.authentication import user_of
from api.models import Role
from api.permissions import has_role
from api.serializers import problem_responses
from audit.mixins import DENIED_STATUSES
from audit.services import audit_access
from scheduling.bookings.audit import ServiceReportedAuditMixin
from scheduling.models import Booking
from video import quality, services
from video.serializers import JoinIn, JoinOut, RoomQualityOut, join_payload

TAGS = ["video"]


def ws_url(request: Request, *, room_id: uuid.UUID) -> str:
    """The room's socket URL on the host the request came to: ws:// for http, wss:// for https."""
    scheme, rest = request.build_absolute_uri(f"/ws/video/{room_id}/").split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}"


class RoomJoinView(ServiceReportedAuditMixin, APIView):
    """Join the video room of a booking (its client or its therapist)."""

    audit_resource = "scheduling.booking"
    audit_lookup_kwarg = "booking_id"
    audit_models = (Booking,)
    audit_verb = services.JOIN_DENIED  # what a refusal records (a success: JOINED, by the service)
    audit_denied_statuses = DENIED_STATUSES | {409}  # the window and state refusals too

    @extend_schema(
        operation_id="video_room_join",
        summary="Join a booking's video room",
        description="For the booking's client or therapist while the room is open (from "
        "VIDEO_ROOM_OPENS_MINUTES_BEFORE before the start to VIDEO_ROOM_GRACE_MINUTES after "
        "the end). Returns a room token for the socket's hello, the socket's URL and the ICE "
        "servers (TURN credentials valid until the window closes). Each join replaces the "
        "participant's token: older ones no longer open a socket. A client must send "
        "jurisdiction (where they are now): without it, 400 validation_error naming it; a "
        "therapist may omit it. 404 booking_not_found also for someone else's booking; 409 "
        "booking_not_confirmed, room_not_open (with opens_at), room_closed, no_video; 403 "
        "not_licensed_in_jurisdiction (client) or mfa_required.",
        tags=TAGS,
        request=JoinIn,
        responses={200: JoinOut, **problem_responses(400, 401, 403, 404, 409)},
    )
    def post(self, request: Request, booking_id: uuid.UUID) -> Response:
        user = user_of(request)
        data = JoinIn(data=request.data, context={"role": user.role})
        data.is_valid(raise_exception=True)
        result = services.room_join(
            booking_id=booking_id,
            user=user,
            jurisdiction=data.validated_data.get("jurisdiction", ""),
            request=request,
            now=timezone.now(),
        )
        payload = join_payload(result, ws_url=ws_url(request, room_id=result.room.pk))
        return Response(JoinOut(payload).data)


class RoomQualityView(ServiceReportedAuditMixin, APIView):
    """The call quality of a booking's session, for support: its therapist or an admin."""

    audit_resource = "scheduling.booking"
    audit_lookup_kwarg = "booking_id"
    audit_models = (Booking,)
    permission_classes = [has_role(Role.THERAPIST, Role.ADMIN)]

    @extend_schema(
        operation_id="video_room_quality",
        summary="Call quality of a booking's session",
        description="What the participants' clients reported over the call (stats messages "
        "every VIDEO_STATS_INTERVAL_SECONDS): p50/p95 round-trip time, packet loss, jitter, "
        "bitrate and the time on relay (TURN), per participant and for the session. Never an "
        "address. For the booking's therapist or an admin; 404 booking_not_found for anyone "
        "else's booking.",
        tags=TAGS,
        responses={200: RoomQualityOut, **problem_responses(401, 403, 404)},
    )
    def get(self, request: Request, booking_id: uuid.UUID) -> Response:
        result = quality.room_quality(booking_id=booking_id, user=user_of(request))
        audit_access(obj=result.booking, action="video.quality.read")
        return Response(RoomQualityOut(result).data)
