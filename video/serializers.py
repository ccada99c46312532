"""The join's request and response (docs/video.md, "Join")."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from api.models import Role
from api.serializers import StrictInputSerializer
from scheduling.bookings.serializers import JURISDICTION
from video.models import ParticipantRole, RoomMode
from video.services import JoinResult


class JoinIn(StrictInputSerializer):
    """The join's body: where the client is now (required for a client; ``context["role"]``
    is the caller's account role)."""

    jurisdiction = serializers.RegexField(
        JURISDICTION,
        max_length=6,
        required=False,
        help_text="Where the client is now: ISO 3166-2 (US-NY) or a country (GB). Required "
        "for the client (the therapist must be licensed there today); ignored for the therapist.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.context.get("role") == Role.CLIENT and not attrs.get("jurisdiction"):
            raise serializers.ValidationError(
                {"jurisdiction": ["This field is required."]}, code="required"
            )
        return attrs


class IceServerOut(serializers.Serializer):
    """An RTCIceServer: STUN (``urls`` only) or TURN (with TURN REST credentials)."""

    urls = serializers.ListField(child=serializers.CharField())
    username = serializers.CharField(
        required=False, help_text="TURN only: '<expiry unix time>:<random id>'"
    )
    credential = serializers.CharField(required=False, help_text="TURN only")


class WindowOut(serializers.Serializer):
    opens_at = serializers.DateTimeField()
    closes_at = serializers.DateTimeField()


class JoinOut(serializers.Serializer):
    room = serializers.UUIDField(help_text="The room's id (not the booking's)")
    token = serializers.CharField(help_text="Room token: for the socket's hello only")
    expires_at = serializers.DateTimeField(
        help_text="The token's expiry (never past the window's end)"
    )
    ws_url = serializers.CharField(help_text="The room's signalling WebSocket")
    ice_servers = IceServerOut(many=True)
    role = serializers.ChoiceField(choices=[ParticipantRole.THERAPIST, ParticipantRole.CLIENT])
    mode = serializers.ChoiceField(choices=RoomMode.choices)
    window = WindowOut()


def join_payload(result: JoinResult, *, ws_url: str) -> dict[str, Any]:
    """``JoinOut``'s input: a join's result and its socket's URL."""
    opens_at, closes_at = result.window
    return {
        "room": result.room.pk,
        "token": result.token,
        "expires_at": result.expires_at,
        "ws_url": ws_url,
        "ice_servers": result.ice_servers,
        "role": result.participant.role,
        "mode": result.room.mode,
        "window": {"opens_at": opens_at, "closes_at": closes_at},
    }


class QualitySummaryOut(serializers.Serializer):
    """Call quality over a participant's reports (or the session's): no address of any kind."""

    samples = serializers.IntegerField(min_value=0)
    first_at = serializers.DateTimeField(allow_null=True)
    last_at = serializers.DateTimeField(allow_null=True)
    rtt_p50_ms = serializers.FloatField(allow_null=True)
    rtt_p95_ms = serializers.FloatField(allow_null=True)
    loss_mean = serializers.FloatField(allow_null=True, help_text="Fraction of packets lost")
    loss_max = serializers.FloatField(allow_null=True)
    jitter_p50_ms = serializers.FloatField(allow_null=True)
    bitrate_in_p50_kbps = serializers.FloatField(allow_null=True)
    reported_seconds = serializers.FloatField(help_text="The time the reports cover")
    relay_seconds = serializers.FloatField(help_text="Of which media went through TURN")


class PersonQualityOut(serializers.Serializer):
    participant = serializers.UUIDField(source="participant_id")
    role = serializers.ChoiceField(choices=ParticipantRole.choices)
    summary = QualitySummaryOut()


class RoomQualityOut(serializers.Serializer):
    booking = serializers.UUIDField(source="booking.pk")
    session = QualitySummaryOut(
        allow_null=True, help_text="Everyone's reports together; null before the room opened"
    )
    participants = PersonQualityOut(many=True, source="people")
