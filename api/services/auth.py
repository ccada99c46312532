"""Signing in with a password, refreshing with rotation, logging out, revoking token families.

Sign-in (``login_attempt``):
- An unknown email, a wrong password and an inactive account give the same 401, and each runs
  the password hasher once, so neither the answer nor its timing tells whether an account
  exists.
- Per IP: ``RATE_LIMIT_LOGIN_PER_IP_PER_MINUTE`` attempts (api/services/ratelimit.py).
- Per account: from the ``LOGIN_MAX_FAILURES_BEFORE_BACKOFF``-th consecutive failure on, the
  account is locked for 1, 2, 4 … seconds, capped at ``LOGIN_BACKOFF_MAX_SECONDS``. The count is
  an ``F()`` update on the user row, read back inside the same transaction (the row stays
  locked by the update until commit), so parallel failures are each counted. While locked,
  every attempt — even with the right password — answers 429 with ``Retry-After`` and is not
  counted, so a lock always ends by itself: an attacker cannot lock the owner out for good.
  A success resets the count. An address with no account follows the same schedule, counted
  in the cache for a day, so the lockout is no oracle for which accounts exist either.
- An account with ``mfa_enabled`` gets only an ``mfa_pending`` challenge (the MFA step ends the
  sign-in); other accounts get a session with ``amr=["pwd"]``. Staff without MFA must enrol
  before anything but their account endpoints accepts their token (api/permissions.py).

Refresh (``session_refresh``): the family row is locked, and only the family's current refresh
token is exchanged. Presenting an earlier one is reuse: the whole family is revoked, which also
ends its access tokens (the authentication class checks the family on every request). Two
parallel refreshes with the same token therefore give one success and one reuse. The idle
timeout (``JWT_REFRESH_TTL_SECONDS`` since the last refresh) and the absolute lifetime
(``JWT_FAMILY_MAX_AGE_SECONDS`` since sign-in) end a family too.

Every outcome is audited; a refusal's audit row (and counter or revocation) is committed before
the refusal is raised, so a failed request still leaves its trace.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F
from django.http import HttpRequest

from api import crypto, tokens
from api.auditing import Outcome, audit_event_record
from api.errors import TooManyRequestsError, UnauthorizedError
from api.models import TokenFamily, User, normalize_email
from api.services.ratelimit import counter_incr, rate_limit_ip
from api.services.sessions import TokenPair, mfa_challenge_issue, session_rotate, session_start

AMR_PASSWORD = ["pwd"]
# Failures against an address without an account are remembered this long (in the cache).
UNKNOWN_ACCOUNT_WINDOW_SECONDS = 24 * 3600


class AccountLocked(TooManyRequestsError):
    code = "too_many_failures"

    def __init__(self, *, retry_after: int):
        super().__init__(
            "Too many failed sign-in attempts. Try again later.", retry_after=retry_after
        )


def _invalid_credentials() -> UnauthorizedError:
    return UnauthorizedError("The email or password is incorrect.", code="invalid_credentials")


def _invalid_refresh() -> UnauthorizedError:
    return UnauthorizedError("The refresh token is invalid or expired.", code="invalid_token")


@dataclass(frozen=True)
class SignedIn:
    user: User
    tokens: TokenPair


@dataclass(frozen=True)
class MfaRequired:
    """The password was right; the sign-in ends with the second factor (``mfa_token``)."""

    user: User
    mfa_token: str


# --- Per-account back-off ---------------------------------------------------------------------


def backoff_seconds(failures: int) -> int:
    """The lock after ``failures`` consecutive failures: none below the threshold, then 1, 2,
    4 … seconds, capped at ``LOGIN_BACKOFF_MAX_SECONDS``."""
    over = failures - settings.LOGIN_MAX_FAILURES_BEFORE_BACKOFF
    if over < 0:
        return 0
    return int(min(2 ** min(over, 32), settings.LOGIN_BACKOFF_MAX_SECONDS))


def _seconds_until(until: datetime | None, now: datetime) -> int:
    if until is None or until <= now:
        return 0
    return max(1, math.ceil((until - now).total_seconds()))


def account_lock_check(*, user: User, request: HttpRequest | None, now: datetime) -> None:
    """Raise ``AccountLocked`` (audited) while the account's back-off lasts."""
    remaining = _seconds_until(user.locked_until, now)
    if remaining:
        audit_event_record(
            action="auth.login.locked_out",
            outcome=Outcome.DENIED,
            request=request,
            resource_type="user",
            resource_id=str(user.pk),
            details={"retry_after": remaining},
        )
        raise AccountLocked(retry_after=remaining)


def account_failure_record(
    *, user: User, action: str, request: HttpRequest | None, now: datetime
) -> None:
    """Count one failed password check on ``user`` and start the back-off when it is due.

    ``action`` names the audited event (``auth.login.failed``, ``auth.password.change_failed``);
    a failure that starts a lock also records ``auth.lockout``. Call it outside any transaction:
    the count and the events are committed before the caller raises its refusal.
    """
    with transaction.atomic():
        users = User.objects.filter(pk=user.pk)
        users.update(failed_login_count=F("failed_login_count") + 1)
        # The update holds the row lock until commit: no one else's increment lands in between.
        failures = users.values_list("failed_login_count", flat=True).get()
        lock = backoff_seconds(failures)
        if lock:
            users.update(locked_until=now + timedelta(seconds=lock))
        audit_event_record(
            action=action,
            outcome=Outcome.DENIED,
            request=request,
            resource_type="user",
            resource_id=str(user.pk),
            details={"reason": "wrong_password", "failures": failures},
        )
        if lock:
            audit_event_record(
                action="auth.lockout",
                outcome=Outcome.DENIED,
                request=request,
                resource_type="user",
                resource_id=str(user.pk),
                details={"failures": failures, "lock_seconds": lock},
            )


def account_failures_reset(*, user: User, signed_in_at: datetime | None = None) -> None:
    """A proven password: clear the back-off state (and note the sign-in time, if one)."""
    fields: dict[str, object] = {"failed_login_count": 0, "locked_until": None}
    if signed_in_at is not None:
        fields["last_login"] = signed_in_at
    User.objects.filter(pk=user.pk).update(**fields)


def _unknown_lock_key(email: str) -> str:
    return f"login:unknown-lock:{crypto.keyed_hash(email, purpose='login-unknown')}"


def _unknown_account_refuse(
    *, email: str, password: str, request: HttpRequest | None, now: datetime
) -> UnauthorizedError:
    """The refusal for an address without an account, indistinguishable from a wrong password."""
    lock_key = _unknown_lock_key(email)
    remaining = max(0, int(cache.get(lock_key, 0)) - int(now.timestamp()))
    if remaining:
        audit_event_record(
            action="auth.login.locked_out",
            outcome=Outcome.DENIED,
            request=request,
            details={"reason": "unknown_account", "retry_after": remaining},
        )
        raise AccountLocked(retry_after=remaining)
    User().set_password(password)  # the same hashing work as checking a real password
    failures = counter_incr(
        scope="login:unknown-account",
        key=email,
        window_seconds=UNKNOWN_ACCOUNT_WINDOW_SECONDS,
        now=now,
    )
    lock = backoff_seconds(failures)
    if lock:
        cache.set(lock_key, int(now.timestamp()) + lock, timeout=lock)
    audit_event_record(
        action="auth.login.failed",
        outcome=Outcome.DENIED,
        request=request,
        details={"reason": "unknown_account", "failures": failures},
    )
    if lock:
        audit_event_record(
            action="auth.lockout",
            outcome=Outcome.DENIED,
            request=request,
            details={"reason": "unknown_account", "failures": failures, "lock_seconds": lock},
        )
    return _invalid_credentials()


# --- Sign-in ----------------------------------------------------------------------------------


def login_attempt(
    *, email: str, password: str, request: HttpRequest, now: datetime
) -> SignedIn | MfaRequired:
    """The password step of sign-in. Raises 401, or 429 (per IP or per account)."""
    rate_limit_ip(
        request=request,
        scope="login",
        limit=settings.RATE_LIMIT_LOGIN_PER_IP_PER_MINUTE,
        window_seconds=60,
        now=now,
    )
    email = normalize_email(email)
    user = User.objects.filter(email=email).first()
    if user is None:
        raise _unknown_account_refuse(email=email, password=password, request=request, now=now)
    account_lock_check(user=user, request=request, now=now)
    if not user.check_password(password):  # also upgrades an outdated hash (LGN-05)
        account_failure_record(user=user, action="auth.login.failed", request=request, now=now)
        raise _invalid_credentials()
    if not user.is_active:
        audit_event_record(
            action="auth.login.failed",
            outcome=Outcome.DENIED,
            request=request,
            resource_type="user",
            resource_id=str(user.pk),
            details={"reason": "inactive"},
        )
        raise _invalid_credentials()

    with transaction.atomic():
        account_failures_reset(user=user, signed_in_at=now)
        if user.mfa_enabled:
            mfa_token = mfa_challenge_issue(user=user, now=now)
            audit_event_record(
                action="auth.login.mfa_challenged",
                actor=user,
                request=request,
                resource_type="user",
                resource_id=str(user.pk),
            )
            return MfaRequired(user=user, mfa_token=mfa_token)
        pair = session_start(user=user, amr=AMR_PASSWORD, now=now)
        audit_event_record(
            action="auth.login.succeeded",
            actor=user,
            request=request,
            resource_type="user",
            resource_id=str(user.pk),
            details={"family_id": str(pair.family_id), "amr": AMR_PASSWORD},
        )
        return SignedIn(user=user, tokens=pair)


# --- Refresh ----------------------------------------------------------------------------------


def _refusal(*, family: TokenFamily, jti: uuid.UUID, now: datetime) -> str | None:
    """Why a live, locked ``family`` may not exchange refresh token ``jti`` (None: it may)."""
    if family.revoked_at is not None:
        return "revoked"
    if family.current_jti != jti:
        return "reuse"
    if now - family.last_refreshed_at >= timedelta(seconds=settings.JWT_REFRESH_TTL_SECONDS):
        return "idle_timeout"
    if now - family.created_at >= timedelta(seconds=settings.JWT_FAMILY_MAX_AGE_SECONDS):
        return "max_age"
    if not family.user.is_active:
        return "inactive"
    return None


_REVOKE_REASONS = {
    "reuse": TokenFamily.RevokeReason.REUSE,
    "idle_timeout": TokenFamily.RevokeReason.EXPIRED,
    "max_age": TokenFamily.RevokeReason.EXPIRED,
    "inactive": TokenFamily.RevokeReason.DEACTIVATED,
}


def session_refresh(*, refresh_token: str, request: HttpRequest, now: datetime) -> SignedIn:
    """Exchange the current refresh token of a live family for a new pair (rotation)."""
    rate_limit_ip(
        request=request,
        scope="refresh",
        limit=settings.RATE_LIMIT_REFRESH_PER_IP_PER_MINUTE,
        window_seconds=60,
        now=now,
    )
    try:
        claims = tokens.decode(refresh_token, expected_typ=tokens.REFRESH, now=now)
        family_id, jti = uuid.UUID(str(claims.fam)), uuid.UUID(claims.jti)
        user_id = uuid.UUID(claims.sub)
    except (tokens.TokenError, ValueError) as exc:
        audit_event_record(
            action="auth.token.refresh_denied",
            outcome=Outcome.DENIED,
            request=request,
            details={"reason": "invalid_token"},
        )
        raise _invalid_refresh() from exc

    with transaction.atomic():
        family = (
            TokenFamily.objects.select_for_update(of=("self",))
            .select_related("user")
            .filter(pk=family_id, user_id=user_id)
            .first()
        )
        reason = "unknown_family" if family is None else _refusal(family=family, jti=jti, now=now)
        if family is not None and reason is None:
            pair = session_rotate(family=family, now=now)
            audit_event_record(
                action="auth.token.refreshed",
                actor=family.user,
                request=request,
                resource_type="user",
                resource_id=str(user_id),
                details={"family_id": str(family.pk), "generation": family.generation},
            )
            return SignedIn(user=family.user, tokens=pair)
        if family is not None and reason in _REVOKE_REASONS:
            TokenFamily.objects.filter(pk=family.pk).update(
                revoked_at=now, revoked_reason=_REVOKE_REASONS[reason]
            )
        reuse = reason == "reuse"
        audit_event_record(
            action="auth.token.reuse_detected" if reuse else "auth.token.refresh_denied",
            outcome=Outcome.DENIED,
            request=request,
            resource_type="user",
            resource_id=str(user_id),
            details={"family_id": str(family_id), "reason": reason},
        )
    raise _invalid_refresh()


# --- Logout and revocation --------------------------------------------------------------------


def token_families_revoke(
    *,
    user: User,
    reason: TokenFamily.RevokeReason,
    now: datetime,
    keep_family_id: uuid.UUID | None = None,
) -> int:
    """Revoke every live family of ``user`` except ``keep_family_id``; return how many.

    Their refresh and access tokens stop working at once. Used by logout-all, password
    change/reset, deactivation and second-factor changes.
    """
    families = TokenFamily.objects.filter(user=user, revoked_at__isnull=True)
    if keep_family_id is not None:
        families = families.exclude(pk=keep_family_id)
    return families.update(revoked_at=now, revoked_reason=reason)


def session_logout(
    *, user: User, family_id: uuid.UUID, request: HttpRequest, now: datetime
) -> None:
    """End the caller's own sign-in: its family's refresh and access tokens stop working."""
    with transaction.atomic():
        TokenFamily.objects.filter(pk=family_id, user=user, revoked_at__isnull=True).update(
            revoked_at=now, revoked_reason=TokenFamily.RevokeReason.LOGOUT
        )
        audit_event_record(
            action="auth.logout",
            actor=user,
            request=request,
            resource_type="user",
            resource_id=str(user.pk),
            details={"family_id": str(family_id)},
        )


def session_logout_all(*, user: User, request: HttpRequest, now: datetime) -> int:
    """End every sign-in of ``user`` (this one included); return how many were live."""
    with transaction.atomic():
        revoked = token_families_revoke(
            user=user, reason=TokenFamily.RevokeReason.LOGOUT_ALL, now=now
        )
        audit_event_record(
            action="auth.logout_all",
            actor=user,
            request=request,
            resource_type="user",
            resource_id=str(user.pk),
            details={"families_revoked": revoked},
        )
    return revoked
