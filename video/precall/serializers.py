"""The pre-call test's requests and answers (docs/video.md, "Pre-call test")."""

from __future__ import annotations

from typing import Any

from aiortc.sdp import SessionDescription
from django.conf import settings
from rest_framework import serializers

from api.serializers import StrictInputSerializer
from video.precall.services import PrecallStart
from video.sdp import SdpError, sdp_check
from video.serializers import IceServerOut

MIN_SECONDS = 5


class PrecallStartIn(StrictInputSerializer):
    seconds = serializers.IntegerField(
        required=False,
        min_value=MIN_SECONDS,
        help_text="How long to measure once media flows (default VIDEO_PRECALL_SECONDS, at most "
        "VIDEO_PRECALL_MAX_SECONDS).",
    )

    def validate_seconds(self, value: int) -> int:
        if value > settings.VIDEO_PRECALL_MAX_SECONDS:
            raise serializers.ValidationError(
                f"At most {settings.VIDEO_PRECALL_MAX_SECONDS} seconds.", code="max_value"
            )
        return value


class LimitsOut(serializers.Serializer):
    width = serializers.IntegerField(help_text="Video is scaled down to fit width x height")
    height = serializers.IntegerField()
    fps = serializers.IntegerField(help_text="At most this many video frames a second come back")
    max_seconds = serializers.IntegerField()


class PrecallStartOut(serializers.Serializer):
    test = serializers.UUIDField(help_text="The test's id")
    token = serializers.CharField(help_text="Pre-call token: for this test's offer only")
    expires_at = serializers.DateTimeField(help_text="The offer must be sent before this")
    seconds = serializers.IntegerField(help_text="How long the test measures")
    offer_url = serializers.CharField(help_text="Where to POST the offer")
    ice_servers = IceServerOut(many=True)
    limits = LimitsOut()


def start_payload(result: PrecallStart, *, offer_url: str) -> dict[str, Any]:
    return {
        "test": result.test_id,
        "token": result.token,
        "expires_at": result.expires_at,
        "seconds": result.seconds,
        "offer_url": offer_url,
        "ice_servers": result.ice_servers,
        "limits": result.limits.as_dict(),
    }


def _sections(sdp: str) -> set[str]:
    return {media.kind for media in SessionDescription.parse(sdp).media}


class PrecallOfferIn(StrictInputSerializer):
    token = serializers.CharField(max_length=4096, help_text="The test's pre-call token")
    sdp = serializers.CharField(
        trim_whitespace=False,
        help_text="The offer, with every candidate in it (wait for ICE gathering to complete): "
        "DTLS-SRTP only, a data channel and audio or video.",
    )

    def validate_sdp(self, value: str) -> str:
        try:
            sdp_check(value)
        except SdpError as error:
            raise serializers.ValidationError(error.detail, code=error.code) from None
        kinds = _sections(value)
        if "application" not in kinds:
            raise serializers.ValidationError(
                "The offer needs a data channel (for pings and the report).", code="no_data_channel"
            )
        if not kinds & {"audio", "video"}:
            raise serializers.ValidationError("The offer has no audio or video.", code="no_media")
        return value


class PrecallAnswerOut(serializers.Serializer):
    test = serializers.UUIDField()
    type = serializers.ChoiceField(choices=["answer"])
    sdp = serializers.CharField(help_text="The echo peer's answer, every candidate in it")
