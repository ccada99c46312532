"""JSON Web Tokens: minting and strict verification.

The algorithm is pinned (EdDSA, Ed25519) and never read from a token; keys are chosen only by
``kid`` from our own keyring (the current key plus earlier public keys kept for a rotation
window), so ``jku``/``x5u``/``jwk`` headers are never followed. Time claims are checked here
against an injectable ``now`` rather than the wall clock inside PyJWT.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings

ACCESS = "access"
REFRESH = "refresh"
MFA_PENDING = "mfa_pending"
VIDEO_ROOM = "video_room"  # for one video room's socket, with its own audience (video/tokens.py)
VIDEO_PRECALL = "video_precall"  # one pre-call test's offer (video/precall/tokens.py)
TOKEN_TYPES = frozenset({ACCESS, REFRESH, MFA_PENDING, VIDEO_ROOM, VIDEO_PRECALL})
REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", "iat", "jti", "typ")
# Three unpadded base64url segments, the signature not empty (RFC 7515 §7.1): anything else
# (padding, "+/", stray characters, more or fewer segments) is refused before any decoding.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


class TokenError(Exception):
    """The token is not acceptable. The message is for logs/tests, never sent to clients."""


@dataclass(frozen=True)
class TokenClaims:
    sub: str
    typ: str
    jti: str
    iat: int
    exp: int
    role: str
    auth_time: int
    amr: tuple[str, ...]
    fam: str | None
    extra: Mapping[str, str] = field(default_factory=dict)  # the claims ``decode`` was asked for

    @property
    def mfa(self) -> bool:
        return "mfa" in self.amr


@dataclass(frozen=True)
class _Keyring:
    kid: str
    private: Ed25519PrivateKey
    public: dict[str, Ed25519PublicKey]


@lru_cache(maxsize=8)
def _load_keyring(private_pem: str, kid: str, previous: tuple[tuple[str, str], ...]) -> _Keyring:
    private = serialization.load_pem_private_key(private_pem.encode(), password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise TokenError("JWT_PRIVATE_KEY must be an Ed25519 key")
    public: dict[str, Ed25519PublicKey] = {kid: private.public_key()}
    for old_kid, pem in previous:
        key = serialization.load_pem_public_key(pem.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise TokenError(f"JWT_PREVIOUS_PUBLIC_KEYS[{old_kid}] must be an Ed25519 key")
        public.setdefault(old_kid, key)
    return _Keyring(kid=kid, private=private, public=public)


def keyring() -> _Keyring:
    return _load_keyring(
        settings.JWT_PRIVATE_KEY,
        settings.JWT_KEY_ID,
        tuple(sorted(settings.JWT_PREVIOUS_PUBLIC_KEYS.items())),
    )


def mint(
    *,
    typ: str,
    sub: str,
    role: str,
    now: datetime,
    ttl_seconds: int,
    auth_time: datetime,
    amr: list[str] | tuple[str, ...],
    family_id: uuid.UUID | None = None,
    jti: uuid.UUID | None = None,
    audience: str | None = None,
    expires_at: int | None = None,
    extra: Mapping[str, str] | None = None,
) -> str:
    """A signed token. ``audience`` defaults to ``JWT_AUDIENCE``; ``expires_at`` (a Unix time)
    shortens ``ttl_seconds``; ``extra`` adds string claims that are not registered ones."""
    if typ not in TOKEN_TYPES:
        raise ValueError(f"unknown token type {typ}")
    ring = keyring()
    iat = int(now.timestamp())
    exp = iat + ttl_seconds if expires_at is None else min(iat + ttl_seconds, expires_at)
    payload: dict[str, Any] = {
        **(extra or {}),
        "iss": settings.JWT_ISSUER,
        "aud": audience or settings.JWT_AUDIENCE,
        "sub": sub,
        "iat": iat,
        "nbf": iat,
        "exp": exp,
        "jti": str(jti or uuid.uuid4()),
        "typ": typ,
        "role": role,
        "auth_time": int(auth_time.timestamp()),
        "amr": list(amr),
    }
    if family_id is not None:
        payload["fam"] = str(family_id)
    return jwt.encode(
        payload, ring.private, algorithm=settings.JWT_ALGORITHM, headers={"kid": ring.kid}
    )


def decode(
    token: str,
    *,
    expected_typ: str,
    now: datetime,
    audience: str | None = None,
    extra: tuple[str, ...] = (),
) -> TokenClaims:
    """Verify signature, header, issuer, audience (default ``JWT_AUDIENCE``), type and times;
    return the claims, with ``extra`` ones required as non-empty strings."""
    audience = audience or settings.JWT_AUDIENCE
    if len(token) > settings.JWT_MAX_TOKEN_BYTES or not _COMPACT_JWS.fullmatch(token):
        raise TokenError("not a compact JWS of an acceptable size")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise TokenError("malformed header") from exc
    if header.get("alg") != settings.JWT_ALGORITHM:
        raise TokenError("unexpected algorithm")
    if "crit" in header:
        raise TokenError("critical header extensions are not supported")
    kid = header.get("kid")
    public = keyring().public
    if not isinstance(kid, str) or kid not in public:
        raise TokenError("unknown key id")
    try:
        payload = jwt.decode(
            token,
            public[kid],
            algorithms=[settings.JWT_ALGORITHM],
            audience=audience,
            issuer=settings.JWT_ISSUER,
            options={
                "require": list(REQUIRED_CLAIMS),
                "verify_exp": False,  # checked below against the injected now
                "verify_nbf": False,
                "verify_iat": False,
                "strict_aud": True,
            },
        )
    except jwt.PyJWTError as exc:
        raise TokenError(type(exc).__name__) from exc
    return _validate(payload, expected_typ=expected_typ, now=now, audience=audience, extra=extra)


def _validate(
    payload: dict[str, Any],
    *,
    expected_typ: str,
    now: datetime,
    audience: str,
    extra: tuple[str, ...],
) -> TokenClaims:
    # PyJWT already compared iss and aud for equality; repeat the exact check on iss so a
    # prefix or substring of ours can never pass whatever the library version.
    if payload.get("iss") != settings.JWT_ISSUER or payload.get("aud") != audience:
        raise TokenError("wrong issuer or audience")
    if payload.get("typ") != expected_typ:
        raise TokenError("wrong token type")
    ints = {}
    for name in ("exp", "iat", "auth_time"):
        value = payload.get(name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise TokenError(f"{name} must be an integer")
        ints[name] = value
    nbf = payload.get("nbf", ints["iat"])
    if not isinstance(nbf, int) or isinstance(nbf, bool):
        raise TokenError("nbf must be an integer")
    ts = int(now.timestamp())
    leeway = settings.JWT_LEEWAY_SECONDS
    if ints["exp"] <= ts:
        raise TokenError("expired")
    if nbf > ts + leeway or ints["iat"] > ts + leeway:
        raise TokenError("not yet valid")
    sub, jti, role = payload.get("sub"), payload.get("jti"), payload.get("role")
    amr, fam = payload.get("amr", []), payload.get("fam")
    if not all(isinstance(v, str) and v for v in (sub, jti, role)):
        raise TokenError("sub, jti and role must be non-empty strings")
    if not isinstance(amr, list) or not all(isinstance(m, str) for m in amr):
        raise TokenError("amr must be a list of strings")
    if fam is not None and not isinstance(fam, str):
        raise TokenError("fam must be a string")
    if expected_typ in (ACCESS, REFRESH) and not fam:
        raise TokenError("fam is required")
    extras = {name: payload.get(name) for name in extra}
    if not all(isinstance(v, str) and v for v in extras.values()):
        raise TokenError(f"{', '.join(extra)} must be non-empty strings")
    return TokenClaims(
        sub=str(sub),
        typ=expected_typ,
        jti=str(jti),
        iat=ints["iat"],
        exp=ints["exp"],
        role=str(role),
        auth_time=ints["auth_time"],
        amr=tuple(amr),
        fam=fam,
        extra={name: str(value) for name, value in extras.items()},
    )
