"""Room tokens (video/tokens.py): what opens a room's socket, and nothing else (VID-02's
token part). Forged tokens are built with the helpers of tests/api/test_tokens.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings

from api import tokens
from tests.api.test_tokens import _forge, _header, _our_signature
from video.tokens import TokenError, room_token_decode, room_token_mint

NOW = datetime(2026, 11, 3, 14, 20, tzinfo=UTC)
USER, ROOM, PARTICIPANT, JTI = (uuid.uuid4() for _ in range(4))


def _mint(**changes: Any) -> str:
    values: dict[str, Any] = {
        "user_id": USER,
        "room_id": ROOM,
        "participant_id": PARTICIPANT,
        "role": "client",
        "jti": JTI,
        "now": NOW,
        "not_after": NOW + timedelta(hours=1),
        **changes,
    }
    return room_token_mint(**values)


def _claims(**changes: Any) -> dict[str, Any]:
    iat = int(NOW.timestamp())
    return {
        "iss": settings.JWT_ISSUER,
        "aud": settings.VIDEO_TOKEN_AUDIENCE,
        "sub": str(USER),
        "iat": iat,
        "nbf": iat,
        "exp": iat + 300,
        "jti": str(JTI),
        "typ": tokens.VIDEO_ROOM,
        "role": "client",
        "auth_time": iat,
        "amr": [],
        "room": str(ROOM),
        "prt": str(PARTICIPANT),
        **changes,
    }


def test_a_room_token_round_trips():
    claims = room_token_decode(_mint(), now=NOW)
    assert (claims.user_id, claims.room_id, claims.participant_id, claims.role, claims.jti) == (
        USER,
        ROOM,
        PARTICIPANT,
        "client",
        str(JTI),
    )
    assert claims.expires_at == int(NOW.timestamp()) + settings.VIDEO_TOKEN_TTL_SECONDS


def test_the_token_never_outlives_not_after():
    not_after = NOW + timedelta(seconds=30)
    assert room_token_decode(_mint(not_after=not_after), now=NOW).expires_at == int(
        not_after.timestamp()
    )


def test_a_forged_token_signed_with_our_key_is_accepted_as_control():
    token = _forge(_header(), _claims(), _our_signature)
    assert room_token_decode(token, now=NOW).room_id == ROOM


def test_vid_02_an_access_token_is_not_a_room_token():
    access = tokens.mint(
        typ=tokens.ACCESS,
        sub=str(USER),
        role="client",
        now=NOW,
        ttl_seconds=300,
        auth_time=NOW,
        amr=["pwd"],
        family_id=uuid.uuid4(),
    )
    with pytest.raises(TokenError):
        room_token_decode(access, now=NOW)


def test_vid_02_a_room_token_is_not_an_access_token():
    with pytest.raises(TokenError):
        tokens.decode(_mint(), expected_typ=tokens.ACCESS, now=NOW)
    # Not even when the expected type is right but the audience is the API's.
    with pytest.raises(TokenError):
        tokens.decode(_mint(), expected_typ=tokens.VIDEO_ROOM, now=NOW)


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "urn:telehealth:api"},  # another audience
        {"aud": "https://attacker.example"},
        {"typ": tokens.ACCESS},  # right audience, wrong type
        {"room": "not-a-uuid"},
        {"prt": ""},
    ],
    ids=["api-audience", "foreign-audience", "access-type", "room-not-uuid", "no-participant"],
)
def test_vid_02_claims_of_another_kind_are_refused(changes):
    token = _forge(_header(), _claims(**changes), _our_signature)
    with pytest.raises(TokenError):
        room_token_decode(token, now=NOW)


def test_vid_02_an_expired_token_is_refused():
    token = _mint(now=NOW - timedelta(hours=1), not_after=NOW - timedelta(minutes=5))
    with pytest.raises(TokenError):
        room_token_decode(token, now=NOW)


def test_vid_02_alg_none_is_refused():
    token = _forge(_header(alg="none"), _claims())
    with pytest.raises(TokenError):
        room_token_decode(token, now=NOW)


def test_vid_02_another_key_is_refused():
    other = Ed25519PrivateKey.generate()
    token = _forge(_header(), _claims(), other.sign)
    with pytest.raises(TokenError):
        room_token_decode(token, now=NOW)


def test_vid_02_a_tampered_room_is_refused():
    token = _mint()
    head, _payload, signature = token.split(".")
    forged = _forge(_header(), _claims(room=str(uuid.uuid4())), _our_signature).split(".")[1]
    with pytest.raises(TokenError):
        room_token_decode(f"{head}.{forged}.{signature}", now=NOW)
