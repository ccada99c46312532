"""The second factor: TOTP enrolment, backup codes, and the MFA step of sign-in.

Every code is checked with the device row locked (``select_for_update`` inside
``transaction.atomic``), so one code cannot pass twice through parallel requests. A failure is
counted with an ``F()`` update on that locked row and answered with exponential back-off (1, 2,
4, 8 … s: django-otp's ``ThrottlingMixin`` rule), so parallel wrong guesses are each counted and
at most one guess is judged per back-off window. A refusal's counter and audit event are
committed before the refusal is raised: a failed request still leaves its trace.

Locks are taken in one order: the user row (``FOR NO KEY UPDATE``, which serialises changes to
one user's second factor without blocking inserts that reference the user), then the device.
"""

from __future__ import annotations

import base64
import enum
import os
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, urlencode

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.http import HttpRequest

from api import crypto, tokens
from api.auditing import Outcome, audit_event_record
from api.errors import ConflictError, ForbiddenError, TooManyRequestsError, UnauthorizedError
from api.models import BackupCode, TokenFamily, TOTPDevice, User
from api.services.auth import account_failure_record, account_lock_check, token_families_revoke
from api.services.ratelimit import rate_limit_ip
from api.services.sessions import TokenPair, session_start

DEVICE_NAME = "Authenticator app"
KEY_BYTES = 20  # 160-bit HMAC-SHA1 keys, as RFC 4226 recommends
BACKUP_CODE_COUNT = 10
_BACKUP_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # RFC 4648 base32, lower case
_TOTP_CODE = re.compile(r"[0-9]{6}")
_BACKUP_CODE = re.compile(r"[a-z2-7]{5}-?[a-z2-7]{5}")
AMR_MFA = ["pwd", "otp", "mfa"]  # RFC 8176: password, one-time password, multiple factors
OPERATOR = "operator"


class MfaThrottled(TooManyRequestsError):
    code = "mfa_throttled"
    title = "Too many attempts"


# --- Codes ------------------------------------------------------------------------------------


class CodeKind(enum.Enum):
    TOTP = "totp"
    BACKUP = "backup_code"


@dataclass(frozen=True)
class ParsedCode:
    kind: CodeKind
    value: str


def mfa_code_parse(raw: str) -> ParsedCode | None:
    """A 6-digit TOTP code or a backup code (``abcde-fghij``, any case, hyphen optional).

    Surrounding whitespace is ignored; anything else (other lengths, letters in a TOTP code,
    non-ASCII digits, inner spaces) is not a code at all.
    """
    value = raw.strip().lower()
    if _TOTP_CODE.fullmatch(value):
        return ParsedCode(CodeKind.TOTP, value)
    if _BACKUP_CODE.fullmatch(value):
        return ParsedCode(CodeKind.BACKUP, value.replace("-", ""))
    return None


def _backup_digest(value: str) -> str:
    return crypto.keyed_hash(value, purpose="mfa.backup_code")


def _issue_backup_codes(*, device: TOTPDevice) -> list[str]:
    """Replace the device's backup codes with fresh ones; the plain codes are returned once."""
    device.backup_codes.all().delete()
    codes: set[str] = set()
    while len(codes) < BACKUP_CODE_COUNT:
        codes.add("".join(secrets.choice(_BACKUP_ALPHABET) for _ in range(10)))
    BackupCode.objects.bulk_create(
        BackupCode(device=device, digest=_backup_digest(code)) for code in codes
    )
    return sorted(f"{code[:5]}-{code[5:]}" for code in codes)


class _Outcome(enum.Enum):
    TOTP = CodeKind.TOTP.value
    BACKUP = CodeKind.BACKUP.value
    WRONG = "wrong_code"
    THROTTLED = "throttled"


@dataclass(frozen=True)
class _Check:
    outcome: _Outcome
    retry_after: int = 0

    @property
    def ok(self) -> bool:
        return self.outcome in (_Outcome.TOTP, _Outcome.BACKUP)


def _check_code(*, device: TOTPDevice, code: str, now: datetime) -> _Check:
    """Judge ``code`` against a device whose row the caller has locked."""
    wait = device.throttle_wait(now=now)
    if wait:
        return _Check(_Outcome.THROTTLED, retry_after=wait)
    parsed = mfa_code_parse(code)
    outcome = _Outcome.WRONG
    if parsed is not None and parsed.kind is CodeKind.TOTP:
        step = device.match(int(parsed.value), now=now)
        if step is not None:
            device.last_t = step
            outcome = _Outcome.TOTP
    elif parsed is not None and device.confirmed:
        used = BackupCode.objects.filter(
            device=device, digest=_backup_digest(parsed.value), used_at__isnull=True
        ).update(used_at=now)
        if used:
            outcome = _Outcome.BACKUP
    if outcome is _Outcome.WRONG:
        TOTPDevice.objects.filter(pk=device.pk).update(
            throttling_failure_count=F("throttling_failure_count") + 1,
            throttling_failure_timestamp=now,
        )
        device.refresh_from_db(fields=["throttling_failure_count", "throttling_failure_timestamp"])
        return _Check(outcome)
    device.throttling_failure_count = 0
    device.throttling_failure_timestamp = None
    device.last_used_at = now
    device.save(
        update_fields=[
            "last_t",
            "last_used_at",
            "throttling_failure_count",
            "throttling_failure_timestamp",
        ]
    )
    return _Check(outcome)


def _audit_check(
    check: _Check, *, user: User, device: TOTPDevice, purpose: str, request: HttpRequest | None
) -> None:
    if check.outcome is _Outcome.BACKUP:
        audit_event_record(
            action="auth.mfa.backup_code_used",
            actor=user,
            request=request,
            resource_type="mfa_device",
            resource_id=str(device.pk),
            details={"purpose": purpose, "remaining": _backup_codes_left(device)},
        )
    elif not check.ok:
        audit_event_record(
            action="auth.mfa.failed",
            actor=user,
            outcome=Outcome.DENIED,
            request=request,
            resource_type="mfa_device",
            resource_id=str(device.pk),
            details={
                "purpose": purpose,
                "reason": check.outcome.value,
                "failures": device.throttling_failure_count,
            },
        )


def _refuse(check: _Check, *, signing_in: bool) -> None:
    """Raise the refusal for a failed check (after its transaction has committed)."""
    if check.outcome is _Outcome.THROTTLED:
        raise MfaThrottled(
            "Too many wrong codes: wait before trying again.", retry_after=check.retry_after
        )
    if signing_in:
        raise UnauthorizedError("The code is not valid.", code="mfa_code_invalid")
    raise ForbiddenError("The code is not valid.", code="mfa_code_invalid")


# --- Devices and sessions ---------------------------------------------------------------------


def _lock_user(user: User) -> None:
    User.objects.select_for_update(no_key=True).filter(pk=user.pk).first()


def _locked_device(*, user: User, confirmed: bool) -> TOTPDevice | None:
    return TOTPDevice.objects.select_for_update().filter(user=user, confirmed=confirmed).first()


def _backup_codes_left(device: TOTPDevice) -> int:
    return device.backup_codes.filter(used_at__isnull=True).count()


def _create_device(*, user: User, confirmed: bool, now: datetime) -> tuple[TOTPDevice, bytes]:
    key = os.urandom(KEY_BYTES)
    device = TOTPDevice.objects.create(
        user=user,
        name=DEVICE_NAME,
        confirmed=confirmed,
        confirmed_at=now if confirmed else None,
        encrypted_key=TOTPDevice.seal_key(key, user_id=user.pk),
        created_at=now,
    )
    return device, key


def _otpauth_uri(*, user: User, key: bytes, device: TOTPDevice) -> str:
    """The provisioning URI (Google Authenticator "Key Uri Format"); carries the secret."""
    issuer = str(settings.OTP_TOTP_ISSUER or "").replace(":", "")
    label = f"{issuer}:{user.email}" if issuer else user.email
    query = urlencode(
        {
            "secret": _base32(key),
            "algorithm": "SHA1",
            "digits": device.digits,
            "period": device.step,
        }
    )
    if issuer:
        query += f"&issuer={quote(issuer)}"
    return f"otpauth://totp/{quote(label)}?{query}"


def _base32(key: bytes) -> str:
    return base64.b32encode(key).decode("ascii").rstrip("=")


def _set_mfa_enabled(user: User, enabled: bool) -> None:
    User.objects.filter(pk=user.pk).update(mfa_enabled=enabled)
    user.mfa_enabled = enabled


def _revoke_families(*, user: User, keep: uuid.UUID | None, now: datetime) -> int:
    return token_families_revoke(
        user=user, reason=TokenFamily.RevokeReason.MFA_CHANGED, now=now, keep_family_id=keep
    )


def _require_recent_auth(*, auth_time: int, now: datetime) -> None:
    if now.timestamp() - auth_time > settings.REAUTH_MAX_AGE_SECONDS:
        raise ForbiddenError(
            "Sign in again to change your second factor.", code="reauthentication_required"
        )


def _require_password(*, user: User, password: str, request: HttpRequest, now: datetime) -> None:
    """The password again, under the sign-in's per-account back-off (a stolen access token
    cannot be used to guess it faster than the sign-in allows)."""
    account_lock_check(user=user, request=request, now=now)
    if user.check_password(password):
        return
    account_failure_record(user=user, action="auth.mfa.failed", request=request, now=now)
    raise ForbiddenError("The password is not correct.", code="password_invalid")


def _rate_limit(*, request: HttpRequest, now: datetime) -> None:
    rate_limit_ip(
        request=request,
        scope="mfa",
        limit=settings.RATE_LIMIT_MFA_PER_IP_PER_MINUTE,
        window_seconds=60,
        now=now,
    )


# --- Use cases --------------------------------------------------------------------------------


def mfa_totp_enrol_confirmed(*, user: User, now: datetime) -> str:
    """Give ``user`` a confirmed TOTP device at once (operators, demo data); return its URI.

    Replaces any earlier device (and its backup codes) and ends the user's sessions. The
    ``otpauth://`` URI carries the secret: show it once and do not store it.
    """
    with transaction.atomic():
        _lock_user(user)
        TOTPDevice.objects.filter(user=user).delete()
        device, key = _create_device(user=user, confirmed=True, now=now)
        _set_mfa_enabled(user, True)
        revoked = _revoke_families(user=user, keep=None, now=now)
        audit_event_record(
            action="auth.mfa.enrolled",
            actor_label=OPERATOR,
            resource_type="mfa_device",
            resource_id=str(device.pk),
            details={"user_id": str(user.pk), "via": OPERATOR, "families_revoked": revoked},
        )
    return _otpauth_uri(user=user, key=key, device=device)


@dataclass(frozen=True)
class TotpEnrolment:
    otpauth_uri: str
    secret: str


def mfa_totp_begin(
    *,
    user: User,
    password: str,
    code: str | None,
    auth_time: int,
    now: datetime,
    request: HttpRequest,
) -> TotpEnrolment:
    """Start (re-)enrolment: a pending device whose secret is returned this once.

    Needs a recent sign-in and the password; an enrolled user also proves the current device
    with a code. The current device keeps working until the new one is confirmed.
    """
    _rate_limit(request=request, now=now)
    _require_recent_auth(auth_time=auth_time, now=now)
    _require_password(user=user, password=password, request=request, now=now)
    with transaction.atomic():
        _lock_user(user)
        current = _locked_device(user=user, confirmed=True)
        check = _Check(_Outcome.TOTP)
        if current is not None:
            if not code:
                raise ForbiddenError(
                    "Enter a code from your current device to replace it.",
                    code="mfa_code_required",
                )
            check = _check_code(device=current, code=code, now=now)
            _audit_check(check, user=user, device=current, purpose="enrol", request=request)
        if check.ok:
            TOTPDevice.objects.filter(user=user, confirmed=False).delete()
            device, key = _create_device(user=user, confirmed=False, now=now)
            audit_event_record(
                action="auth.mfa.enrolment_started",
                actor=user,
                request=request,
                resource_type="mfa_device",
                resource_id=str(device.pk),
                details={"replacing": current is not None},
            )
    if not check.ok:
        _refuse(check, signing_in=False)
    return TotpEnrolment(
        otpauth_uri=_otpauth_uri(user=user, key=key, device=device), secret=_base32(key)
    )


def mfa_totp_confirm(
    *,
    user: User,
    code: str,
    auth_time: int,
    keep_family_id: uuid.UUID | None,
    now: datetime,
    request: HttpRequest,
) -> list[str]:
    """Confirm the pending device with its first code; return the new backup codes (once).

    The confirmed device replaces any older one, ``mfa_enabled`` is set, and every session but
    the caller's (``keep_family_id``) is ended.
    """
    _rate_limit(request=request, now=now)
    _require_recent_auth(auth_time=auth_time, now=now)
    with transaction.atomic():
        _lock_user(user)
        pending = _locked_device(user=user, confirmed=False)
        if pending is None:
            raise ConflictError(
                "Start the enrolment before confirming it.", code="mfa_enrolment_not_started"
            )
        check = _check_code(device=pending, code=code, now=now)
        _audit_check(check, user=user, device=pending, purpose="confirm", request=request)
        if check.ok:
            replaced, _ = TOTPDevice.objects.filter(user=user, confirmed=True).delete()
            pending.confirmed = True
            pending.confirmed_at = now
            pending.save(update_fields=["confirmed", "confirmed_at"])
            codes = _issue_backup_codes(device=pending)
            _set_mfa_enabled(user, True)
            revoked = _revoke_families(user=user, keep=keep_family_id, now=now)
            audit_event_record(
                action="auth.mfa.enrolled",
                actor=user,
                request=request,
                resource_type="mfa_device",
                resource_id=str(pending.pk),
                details={"replaced": bool(replaced), "families_revoked": revoked},
            )
    if not check.ok:
        _refuse(check, signing_in=False)
    return codes


def mfa_backup_codes_regenerate(
    *,
    user: User,
    password: str,
    code: str,
    now: datetime,
    request: HttpRequest,
) -> list[str]:
    """Issue a new set of backup codes (returned once); every earlier code stops working."""
    _rate_limit(request=request, now=now)
    _require_password(user=user, password=password, request=request, now=now)
    with transaction.atomic():
        _lock_user(user)
        device = _locked_device(user=user, confirmed=True)
        if device is None:
            raise ConflictError("No second factor is enrolled.", code="mfa_not_enrolled")
        check = _check_code(device=device, code=code, now=now)
        _audit_check(check, user=user, device=device, purpose="backup_codes", request=request)
        if check.ok:
            codes = _issue_backup_codes(device=device)
            audit_event_record(
                action="auth.mfa.backup_codes_regenerated",
                actor=user,
                request=request,
                resource_type="mfa_device",
                resource_id=str(device.pk),
                details={"count": len(codes)},
            )
    if not check.ok:
        _refuse(check, signing_in=False)
    return codes


def mfa_disable(
    *,
    user: User,
    password: str,
    code: str,
    auth_time: int,
    keep_family_id: uuid.UUID | None,
    now: datetime,
    request: HttpRequest,
) -> None:
    """Remove a client's second factor. Staff roles must keep theirs."""
    _rate_limit(request=request, now=now)
    if user.is_staff_role:
        raise ForbiddenError(
            "Staff accounts must keep a second factor.", code="mfa_required_for_role"
        )
    _require_recent_auth(auth_time=auth_time, now=now)
    _require_password(user=user, password=password, request=request, now=now)
    with transaction.atomic():
        _lock_user(user)
        device = _locked_device(user=user, confirmed=True)
        if device is None:
            raise ConflictError("No second factor is enrolled.", code="mfa_not_enrolled")
        check = _check_code(device=device, code=code, now=now)
        _audit_check(check, user=user, device=device, purpose="disable", request=request)
        if check.ok:
            TOTPDevice.objects.filter(user=user).delete()
            _set_mfa_enabled(user, False)
            revoked = _revoke_families(user=user, keep=keep_family_id, now=now)
            audit_event_record(
                action="auth.mfa.disabled",
                actor=user,
                request=request,
                resource_type="mfa_device",
                resource_id=str(device.pk),
                details={"families_revoked": revoked},
            )
    if not check.ok:
        _refuse(check, signing_in=False)


def _challenge_invalid() -> UnauthorizedError:
    """The ``mfa_token`` is expired or forged, or its user can no longer finish signing in."""
    return UnauthorizedError("Sign in again.", code="invalid_token")


def mfa_verify(*, mfa_token: str, code: str, now: datetime, request: HttpRequest) -> TokenPair:
    """The second sign-in step: an ``mfa_pending`` token and a code → a signed-in session."""
    _rate_limit(request=request, now=now)
    try:
        claims = tokens.decode(mfa_token, expected_typ=tokens.MFA_PENDING, now=now)
        user_id = uuid.UUID(claims.sub)
    except (tokens.TokenError, ValueError) as exc:
        raise _challenge_invalid() from exc
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        raise _challenge_invalid()
    with transaction.atomic():
        device = _locked_device(user=user, confirmed=True)
        if device is None:  # the second factor was removed after the password step
            raise _challenge_invalid()
        check = _check_code(device=device, code=code, now=now)
        _audit_check(check, user=user, device=device, purpose="sign_in", request=request)
        if check.ok:
            pair = session_start(user=user, amr=AMR_MFA, now=now)
            audit_event_record(
                action="auth.mfa.verified",
                actor=user,
                request=request,
                resource_type="token_family",
                resource_id=str(pair.family_id),
                details={"method": check.outcome.value},
            )
    if not check.ok:
        _refuse(check, signing_in=True)
    return pair


def mfa_admin_verify(*, device: TOTPDevice, code: str, now: datetime) -> bool:
    """The second factor of the Django admin's sign-in (django-otp's ``OTPAdminSite`` calls
    ``TOTPDevice.verify_token``): the same locked, throttled and audited check as the API's."""
    with transaction.atomic():
        locked = TOTPDevice.objects.select_for_update().filter(pk=device.pk, confirmed=True).first()
        if locked is None:
            return False
        check = _check_code(device=locked, code=code, now=now)
        _audit_check(check, user=locked.user, device=locked, purpose="admin", request=None)
        if check.ok:
            audit_event_record(
                action="auth.mfa.verified",
                actor=locked.user,
                resource_type="mfa_device",
                resource_id=str(locked.pk),
                details={"purpose": "admin", "kind": check.outcome.value},
            )
    return check.ok


def mfa_reset(*, user: User, reason: str, now: datetime) -> int:
    """Operators only, after proving the user's identity out of band: remove every device.

    Ends every session; a staff user must enrol again before reaching protected data.
    Returns the number of devices removed.
    """
    with transaction.atomic():
        _lock_user(user)
        _, deleted = TOTPDevice.objects.filter(user=user).delete()
        removed = deleted.get(TOTPDevice._meta.label, 0)
        _set_mfa_enabled(user, False)
        revoked = _revoke_families(user=user, keep=None, now=now)
        audit_event_record(
            action="auth.mfa.reset",
            actor_label=OPERATOR,
            resource_type="user",
            resource_id=str(user.pk),
            details={"reason": reason, "devices_removed": removed, "families_revoked": revoked},
        )
    return removed


@dataclass(frozen=True)
class MfaStatus:
    enrolled: bool
    required_by_role: bool
    confirmed_at: datetime | None
    backup_codes_remaining: int


def mfa_status(*, user: User) -> MfaStatus:
    """The user's second-factor state (a read: no lock, no audit)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    return MfaStatus(
        enrolled=device is not None,
        required_by_role=user.is_staff_role,
        confirmed_at=device.confirmed_at if device else None,
        backup_codes_remaining=_backup_codes_left(device) if device else 0,
    )
