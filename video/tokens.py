"""Room tokens: what opens a video room's socket (docs/video.md, "Room tokens").

An EdDSA JWT from the API's keyring with its own type (``video_room``) and audience
(``VIDEO_TOKEN_AUDIENCE``), so it is never taken for an access token nor an access token for
it. It names the room, the participant and their role, lives ``VIDEO_TOKEN_TTL_SECONDS`` and
never past the room's window. The socket accepts it only while its ``jti`` is the participant's
current one (``Participant.token_jti``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings

from api import tokens
from api.tokens import TokenError

__all__ = ["RoomClaims", "TokenError", "room_token_decode", "room_token_mint"]


@dataclass(frozen=True)
class RoomClaims:
    user_id: uuid.UUID
    room_id: uuid.UUID
    participant_id: uuid.UUID
    role: str
    jti: str
    expires_at: int


def room_token_mint(
    *,
    user_id: uuid.UUID,
    room_id: uuid.UUID,
    participant_id: uuid.UUID,
    role: str,
    jti: uuid.UUID,
    now: datetime,
    not_after: datetime,
) -> str:
    """A room token for one participant, expiring at the earlier of its TTL and ``not_after``."""
    return tokens.mint(
        typ=tokens.VIDEO_ROOM,
        sub=str(user_id),
        role=role,
        now=now,
        ttl_seconds=settings.VIDEO_TOKEN_TTL_SECONDS,
        auth_time=now,
        amr=[],
        jti=jti,
        audience=settings.VIDEO_TOKEN_AUDIENCE,
        expires_at=int(not_after.timestamp()),
        extra={"room": str(room_id), "prt": str(participant_id)},
    )


def room_token_decode(token: str, *, now: datetime) -> RoomClaims:
    """The claims of a valid room token; ``TokenError`` for anything else (the message is for
    logs and tests, never for the socket)."""
    claims = tokens.decode(
        token,
        expected_typ=tokens.VIDEO_ROOM,
        now=now,
        audience=settings.VIDEO_TOKEN_AUDIENCE,
        extra=("room", "prt"),
    )
    try:
        return RoomClaims(
            user_id=uuid.UUID(claims.sub),
            room_id=uuid.UUID(claims.extra["room"]),
            participant_id=uuid.UUID(claims.extra["prt"]),
            role=claims.role,
            jti=claims.jti,
            expires_at=claims.exp,
        )
    except ValueError as exc:
        raise TokenError("sub, room and prt must be UUIDs") from exc
