"""Pre-call tokens: what lets one offer reach the echo peer (docs/video.md, "Pre-call test").

An EdDSA JWT from the API's keyring with its own type (``video_precall``) and the video
audience: never taken for an access token or a room token, nor they for it. Its ``jti`` is the
test's id; ``secs`` is how long the test measures. It lives ``VIDEO_PRECALL_TOKEN_TTL_SECONDS``
and opens one test (``video.precall.services`` spends it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings

from api import tokens
from api.tokens import TokenError

__all__ = ["PrecallClaims", "TokenError", "precall_token_decode", "precall_token_mint"]


@dataclass(frozen=True)
class PrecallClaims:
    user_id: uuid.UUID
    test_id: uuid.UUID
    role: str
    seconds: int
    expires_at: int


def precall_token_mint(
    *, user_id: uuid.UUID, role: str, test_id: uuid.UUID, seconds: int, now: datetime
) -> str:
    return tokens.mint(
        typ=tokens.VIDEO_PRECALL,
        sub=str(user_id),
        role=role,
        now=now,
        ttl_seconds=settings.VIDEO_PRECALL_TOKEN_TTL_SECONDS,
        auth_time=now,
        amr=[],
        jti=test_id,
        audience=settings.VIDEO_TOKEN_AUDIENCE,
        extra={"secs": str(seconds)},
    )


def precall_token_decode(token: str, *, now: datetime) -> PrecallClaims:
    """The claims of a valid pre-call token; ``TokenError`` for anything else."""
    claims = tokens.decode(
        token,
        expected_typ=tokens.VIDEO_PRECALL,
        now=now,
        audience=settings.VIDEO_TOKEN_AUDIENCE,
        extra=("secs",),
    )
    try:
        return PrecallClaims(
            user_id=uuid.UUID(claims.sub),
            test_id=uuid.UUID(claims.jti),
            role=claims.role,
            seconds=int(claims.extra["secs"]),
            expires_at=claims.exp,
        )
    except ValueError as exc:
        raise TokenError("sub and jti must be UUIDs, secs an integer") from exc
