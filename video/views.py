"""The join endpoint (docs/video.md, "Join"): a thin view over ``video.services.room_join``.

An ``AuditedMixin`` view on the booking: the request runs in one transaction with the join's
``video.room.joined`` event; a refusal rolls it back and is recorded as
``video.room.join_denied`` (outcome ``denied``, the problem's code as ``reason``), the 409s of
the join included (``AuditedMixin`` records 401, 403 and 404 by itself).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.http import HttpResponseBase
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.authentication import user_of
from api.serializers import problem_responses
from scheduling.bookings.audit import ServiceReportedAuditMixin
from scheduling.models import Booking
from video import services
from video.serializers import JoinIn, JoinOut, join_payload

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

    def audit_action(self) -> str:
        response = getattr(self, "response", None)
        refused = response is not None and response.status_code >= 400
        return services.JOIN_DENIED if refused else services.JOINED

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response = super().dispatch(request, *args, **kwargs)
        if response.status_code == 409:  # the 401/403/404s are recorded by AuditedMixin
            self._audit_denied(self._audit_resource(), response)
        return response

    @extend_schema(
        operation_id="video_room_join",
        summary="Join a booking's video room",
        description="For the booking's client or therapist while the room is open (from "
        "VIDEO_ROOM_OPENS_MINUTES_BEFORE before the start to VIDEO_ROOM_GRACE_MINUTES after "
        "the end). Returns a room token for the socket's hello, the socket's URL and the ICE "
        "servers (TURN credentials valid until the window closes). Each join replaces the "
        "participant's token: older ones no longer open a socket. 404 booking_not_found also "
        "for someone else's booking; 409 booking_not_confirmed, room_not_open (with opens_at), "
        "room_closed, no_video; 403 not_licensed_in_jurisdiction (client) or mfa_required.",
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
