"""Starting a signed-in session: a new token family and its first access/refresh pair.

Both sign-in paths end here: password only (``amr=["pwd"]``) and password + second factor
(``amr=["pwd", "otp", "mfa"]``). A user enrolled in MFA first gets only an ``mfa_pending``
token from ``mfa_challenge_issue``, which no endpoint but the MFA step accepts.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings

from api import tokens
from api.models import TokenFamily, User


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str
    access_expires_in: int
    family_id: uuid.UUID


def _pair(*, user: User, family: TokenFamily, now: datetime) -> TokenPair:
    common = {
        "sub": str(user.pk),
        "role": user.role,
        "now": now,
        "auth_time": family.auth_time,
        "amr": family.amr,
        "family_id": family.pk,
    }
    access = tokens.mint(typ=tokens.ACCESS, ttl_seconds=settings.JWT_ACCESS_TTL_SECONDS, **common)
    refresh = tokens.mint(
        typ=tokens.REFRESH,
        ttl_seconds=settings.JWT_REFRESH_TTL_SECONDS,
        jti=family.current_jti,
        **common,
    )
    return TokenPair(
        access=access,
        refresh=refresh,
        access_expires_in=settings.JWT_ACCESS_TTL_SECONDS,
        family_id=family.pk,
    )


def session_start(*, user: User, amr: list[str], now: datetime) -> TokenPair:
    """Create a token family for a completed sign-in (``auth_time`` = ``now``)."""
    family = TokenFamily.objects.create(
        user=user,
        created_at=now,
        last_refreshed_at=now,
        current_jti=uuid.uuid4(),
        auth_time=now,
        amr=list(amr),
    )
    return _pair(user=user, family=family, now=now)


def session_rotate(*, family: TokenFamily, now: datetime) -> TokenPair:
    """Give a locked, live family a new current refresh token and return the new pair."""
    family.current_jti = uuid.uuid4()
    family.generation += 1
    family.last_refreshed_at = now
    family.save(update_fields=["current_jti", "generation", "last_refreshed_at"])
    return _pair(user=family.user, family=family, now=now)


def mfa_challenge_issue(*, user: User, now: datetime) -> str:
    """A short-lived ``typ=mfa_pending`` token proving the password step passed."""
    return tokens.mint(
        typ=tokens.MFA_PENDING,
        sub=str(user.pk),
        role=user.role,
        now=now,
        ttl_seconds=settings.JWT_MFA_PENDING_TTL_SECONDS,
        auth_time=now,
        amr=["pwd"],
    )
