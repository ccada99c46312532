"""Helpers shared by the MFA tests: codes at a given time, an enrolled user, a frozen clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.http import HttpRequest
from django.test import RequestFactory
from django_otp.oath import TOTP

from api.models import BackupCode, TokenFamily, TOTPDevice, User
from api.services.mfa import mfa_totp_enrol_confirmed
from audit.models import AuditEvent

# 09:00:10 UTC: 10 s into a 30 s step, so "the current step" is unambiguous.
T0 = datetime(2026, 3, 2, 9, 0, 10, tzinfo=UTC)
STEP = timedelta(seconds=30)


def code_at(device: TOTPDevice, at: datetime) -> str:
    """The 6-digit code the user's app shows at ``at``."""
    totp = TOTP(device.key, step=device.step, digits=device.digits)
    totp.time = at.timestamp()
    return f"{totp.token():0{device.digits}d}"


def wrong_code(device: TOTPDevice, at: datetime) -> str:
    """A well-formed code that is valid at no step within the tolerance around ``at``."""
    valid = {code_at(device, at + k * STEP) for k in range(-3, 4)}
    return next(c for c in (f"{n:06d}" for n in range(1000000)) if c not in valid)


def enrol(user: User, *, now: datetime = T0) -> TOTPDevice:
    """``user`` with a confirmed authenticator (the operator path), as a fresh row."""
    mfa_totp_enrol_confirmed(user=user, now=now)
    user.refresh_from_db()
    return TOTPDevice.objects.get(user=user, confirmed=True)


def http_request(ip: str = "203.0.113.7") -> HttpRequest:
    return RequestFactory().post("/api/v1/auth/mfa/verify", REMOTE_ADDR=ip)


def actions(**filters: object) -> list[str]:
    return list(
        AuditEvent.objects.filter(**filters).order_by("pk").values_list("action", flat=True)
    )


def device_state(user: User) -> list[tuple[object, ...]]:
    """Everything a refused request must leave as it was."""
    return list(
        TOTPDevice.objects.filter(user=user)
        .order_by("pk")
        .values_list(
            "pk",
            "confirmed",
            "encrypted_key",
            "last_t",
            "throttling_failure_count",
            "throttling_failure_timestamp",
        )
    ) + list(
        BackupCode.objects.filter(device__user=user)
        .order_by("pk")
        .values_list("pk", "digest", "used_at")
    )


def live_families(user: User) -> set[object]:
    return set(
        TokenFamily.objects.filter(user=user, revoked_at__isnull=True).values_list("pk", flat=True)
    )


class Clock:
    """``django.utils.timezone.now`` frozen at ``now``; move it with ``advance``."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def freeze(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Freeze ``django.utils.timezone.now`` (what views, authentication and audit read) at T0."""
    frozen = Clock(T0)
    monkeypatch.setattr("django.utils.timezone.now", frozen)
    return frozen
