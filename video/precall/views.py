"""The pre-call test's two endpoints (docs/video.md, "Pre-call test").

``PrecallStartView`` (signed in): a test's token, ICE servers and limits. ``PrecallOfferView``
(the pre-call token in the body, never in the URL): the echo peer's answer. The offer view is
asynchronous: waiting for a media worker (up to ``VIDEO_PRECALL_QUEUE_SECONDS``) and for the
echo peer's ICE gathering must not hold the process's one thread for synchronous views.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponseBase
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import MethodNotAllowed
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.authentication import user_of
from api.serializers import problem_responses
from video.precall import services
from video.precall.serializers import (
    PrecallAnswerOut,
    PrecallOfferIn,
    PrecallStartIn,
    PrecallStartOut,
    start_payload,
)

TAGS = ["video"]


class PrecallStartView(APIView):
    """Start a pre-call test of camera, microphone and connection."""

    @extend_schema(
        operation_id="video_precall_start",
        summary="Start a pre-call test",
        description="A test of camera, microphone and network before a session, against an "
        "echo peer that sends the media back: returns the test's token (for its offer only), "
        "the ICE servers and the limits (video scaled to fit width x height, at most fps frames "
        "a second, at most max_seconds). Then POST the offer to offer_url. Not tied to a "
        "booking or a room.",
        tags=TAGS,
        request=PrecallStartIn,
        responses={200: PrecallStartOut, **problem_responses(400, 401, 403)},
    )
    def post(self, request: Request) -> Response:
        data = PrecallStartIn(data=request.data)
        data.is_valid(raise_exception=True)
        result = services.precall_start(
            user=user_of(request),
            seconds=data.validated_data.get("seconds"),
            request=request,
            now=timezone.now(),
        )
        offer_url = request.build_absolute_uri("/api/v1/video/precall/offer")
        return Response(PrecallStartOut(start_payload(result, offer_url=offer_url)).data)


class PrecallOfferView(APIView):
    """Send a pre-call test's offer; the echo peer answers."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="video_precall_offer",
        summary="Send a pre-call test's offer",
        description="The body carries the pre-call token and the offer (every candidate in "
        "it: wait for ICE gathering to complete; a data channel and audio or video; DTLS-SRTP "
        "only, as every SDP). Answers the echo peer's SDP. The echo peer pings over the data "
        "channel, sends stats every second and a report (verdict good, fair or poor, advice, "
        "figures) at the end, then closes. 400 validation_error (bad, insecure or incomplete "
        "SDP: the error's code says which), 401 invalid_precall_token, 409 precall_token_used, "
        "429 precall_in_progress (one test per user at a time), 503 media_worker_busy with "
        "Retry-After (every slot taken: the same token may retry), 422 offer_not_answerable.",
        tags=TAGS,
        request=PrecallOfferIn,
        responses={200: PrecallAnswerOut, **problem_responses(400, 401, 409, 422, 429, 503)},
    )
    async def post(self, request: Request) -> Response:
        data = PrecallOfferIn(data=request.data)
        data.is_valid(raise_exception=True)
        answer = await services.precall_offer(
            token=data.validated_data["token"],
            sdp=data.validated_data["sdp"],
            request=request,
            now=timezone.now(),
        )
        return Response(
            PrecallAnswerOut({"test": answer.test_id, "type": "answer", "sdp": answer.sdp}).data
        )

    async def dispatch(  # type: ignore[override]
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        """DRF's ``dispatch`` with the handler awaited (DRF has no asynchronous views)."""
        self.args, self.kwargs = args, kwargs
        drf_request = self.initialize_request(request, *args, **kwargs)
        self.request = drf_request
        self.headers = self.default_response_headers
        try:
            self.initial(drf_request, *args, **kwargs)
            if (drf_request.method or "").lower() != "post":
                raise MethodNotAllowed(drf_request.method or "")
            response = await self.post(drf_request, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - DRF's handler maps it, or re-raises
            response = self.handle_exception(exc)
        self.response = self.finalize_response(drf_request, response, *args, **kwargs)
        return self.response
