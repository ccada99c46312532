"""Identity: users with a role, refresh-token families, and stored idempotent responses."""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Any, ClassVar

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django_otp.models import Device, ThrottlingMixin
from django_otp.oath import TOTP

from api import crypto


class Role(models.TextChoices):
    CLIENT = "client", "Client"
    THERAPIST = "therapist", "Therapist"
    COMPLIANCE_OFFICER = "compliance_officer", "Compliance officer"
    ADMIN = "admin", "Admin"


STAFF_ROLES = frozenset({Role.THERAPIST, Role.COMPLIANCE_OFFICER, Role.ADMIN})


def normalize_email(email: str) -> str:
    """Emails are compared whole and case-insensitively: store them stripped and lower-cased."""
    return email.strip().lower()


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        user = self.model(email=normalize_email(email), **extra)
        if password is None:
            user.set_unusable_password()
        else:
            user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("role", Role.ADMIN)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)

    def get_by_natural_key(self, username: str | None) -> User:
        return self.get(email=normalize_email(username or ""))


class User(AbstractBaseUser, PermissionsMixin):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(max_length=254, unique=True)
    full_name = models.CharField(max_length=150, blank=True)
    role = models.CharField(max_length=32, choices=Role.choices, default=Role.CLIENT)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)
    # Set and cleared only by the MFA services when a TOTP device is confirmed or removed; the
    # sign-in step reads it to decide whether a second factor is asked for.
    mfa_enabled = models.BooleanField(default=False)
    # Per-account brute-force state, changed only with F() updates (see api/services/auth.py).
    failed_login_count = models.PositiveIntegerField(default=0)
    locked_until = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="user_email_ci_unique"),
            models.CheckConstraint(
                condition=models.Q(role__in=[r.value for r in Role]), name="user_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"User {self.pk}"

    @property
    def is_staff(self) -> bool:
        """Django admin access (with the second factor: api/admin.py). Compliance officers get
        in to read the audit trail, the one admin page open to them (audit/admin.py)."""
        return self.is_active and self.role in (Role.ADMIN, Role.COMPLIANCE_OFFICER)

    @property
    def is_staff_role(self) -> bool:
        return self.role in STAFF_ROLES


class TokenFamily(models.Model):
    """One login: its refresh tokens rotate, and only ``current_jti`` may be exchanged.

    Presenting any earlier refresh token of the family is reuse: the whole family is revoked.
    The row is locked while a refresh is exchanged, so two racing refreshes cannot both win.
    Access tokens carry the family id, so revoking a family ends its access tokens too.
    """

    class RevokeReason(models.TextChoices):
        LOGOUT = "logout"
        LOGOUT_ALL = "logout_all"
        REUSE = "reuse"
        PASSWORD_CHANGED = "password_changed"  # noqa: S105 - a reason code, not a password
        MFA_CHANGED = "mfa_changed"
        DEACTIVATED = "deactivated"
        EXPIRED = "expired"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="token_families")
    created_at = models.DateTimeField()
    last_refreshed_at = models.DateTimeField()
    current_jti = models.UUIDField()
    generation = models.PositiveIntegerField(default=0)
    auth_time = models.DateTimeField()
    amr = models.JSONField(default=list)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=32, choices=RevokeReason.choices, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "revoked_at"], name="tokenfamily_user_live")]

    def __str__(self) -> str:
        return f"TokenFamily {self.pk}"


class IdempotencyRecord(models.Model):
    """A creating POST's stored outcome, replayed when the same key and body come again."""

    actor = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=512)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    # The response may hold protected data, so it is stored encrypted (api.crypto).
    response_body = models.TextField(blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["actor", "key"], name="idempotency_actor_key_unique")
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created")]

    def __str__(self) -> str:
        return f"IdempotencyRecord {self.pk}"


# --- Second factor ----------------------------------------------------------------------------
# django-otp's own TOTPDevice and StaticToken keep the TOTP key and the backup codes in plain
# text, so the devices are defined here on its ``Device`` base and throttling fields instead:
# the key is sealed with api.crypto (bound to its user), backup codes are stored as keyed
# hashes only. Verification lives in api/services/mfa.py (row lock, atomic failure counter).


class TOTPDevice(ThrottlingMixin, Device):
    """A user's authenticator app (RFC 6238), with the backup codes issued with it.

    A user has at most one confirmed device (the one sign-in asks for) and at most one pending
    one (enrolment begun, waiting for its first code). The backup codes belong to the device,
    so replacing or removing it drops them, and one row lock and one failure counter cover
    both kinds of code: alternating them gives a guesser nothing.
    """

    # ``confirmed`` defaults to False here (django-otp: True): a device is pending until its
    # first code.
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="totp_devices")
    confirmed = models.BooleanField(default=False)
    encrypted_key = models.TextField()
    step = models.PositiveSmallIntegerField(default=30)
    digits = models.PositiveSmallIntegerField(default=6)
    tolerance = models.PositiveSmallIntegerField(default=1)
    # The time step of the last accepted code: only a later step is accepted (no replay).
    last_t = models.BigIntegerField(default=-1)
    created_at = models.DateTimeField()
    confirmed_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "TOTP device"
        constraints = [
            models.UniqueConstraint(
                fields=["user"],
                condition=models.Q(confirmed=True),
                name="totpdevice_one_confirmed_per_user",
            ),
            models.UniqueConstraint(
                fields=["user"],
                condition=models.Q(confirmed=False),
                name="totpdevice_one_pending_per_user",
            ),
        ]

    def __str__(self) -> str:
        return f"TOTPDevice {self.pk}"

    @staticmethod
    def _associated_data(user_id: uuid.UUID) -> bytes:
        # Binds the ciphertext to its user: a key copied onto another row does not decrypt.
        return f"totp-key:{user_id}".encode()

    @classmethod
    def seal_key(cls, key: bytes, *, user_id: uuid.UUID) -> str:
        return crypto.encrypt(key.hex(), associated_data=cls._associated_data(user_id))

    @property
    def key(self) -> bytes:
        return bytes.fromhex(
            crypto.decrypt(self.encrypted_key, associated_data=self._associated_data(self.user_id))
        )

    def get_throttle_factor(self) -> int:
        return int(settings.OTP_TOTP_THROTTLE_FACTOR)

    def throttle_wait(self, *, now: datetime) -> int:
        """Seconds before a code may be tried again: 1, 2, 4, 8 … after successive failures.

        Capped at ``MFA_BACKOFF_MAX_SECONDS``, so someone who knows the password can slow the
        owner's second step down but never lock them out for good (LGN-02).
        """
        count, last = self.throttling_failure_count, self.throttling_failure_timestamp
        if count == 0 or last is None or self.get_throttle_factor() <= 0:
            return 0
        required = min(
            self.get_throttle_factor() * 2 ** min(count - 1, 32), settings.MFA_BACKOFF_MAX_SECONDS
        )
        return max(0, math.ceil(required - (now - last).total_seconds()))

    def verify_is_allowed(self) -> tuple[bool, dict[str, Any] | None]:
        wait = self.throttle_wait(now=timezone.now())
        if wait:
            return False, {"error_message": f"Too many wrong codes: wait {wait} s."}
        return True, None

    def verify_token(self, token: str) -> bool:
        """django-otp's entry point (the admin's sign-in form)."""
        from api.services.mfa import mfa_admin_verify

        return mfa_admin_verify(device=self, code=str(token), now=timezone.now())

    def match(self, code: int, *, now: datetime) -> int | None:
        """The time step at which ``code`` is valid (within ``tolerance``, after ``last_t``)."""
        totp = TOTP(self.key, step=self.step, digits=self.digits)
        totp.time = now.timestamp()
        if totp.verify(code, tolerance=self.tolerance, min_t=self.last_t + 1):
            return int(totp.t())
        return None


class BackupCode(models.Model):
    """One single-use recovery code of a device, kept only as a keyed hash (api.crypto)."""

    device = models.ForeignKey(TOTPDevice, on_delete=models.CASCADE, related_name="backup_codes")
    digest = models.CharField(max_length=64)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["device", "digest"], name="backupcode_device_digest")
        ]

    def __str__(self) -> str:
        return f"BackupCode {self.pk}"


class OutboundEmail(models.Model):
    """A plain email to send: an outbox row (the booking emails have their own, in scheduling).

    Written in the transaction of the change it tells of, so a rolled-back change sends nothing
    and a committed one is never lost: delivered right after the commit, and by ``manage.py
    send_emails`` while that failed, until ``EMAIL_GIVE_UP_HOURS`` (then logged and removed).
    The body is encrypted (``api.crypto``, bound to the row's recipient): it can hold a
    password-reset code. A sent row is deleted, so the table holds only what is still to send.
    Senders claim rows with ``api.services.outbox.outbox_claim``.
    """

    id = models.BigAutoField(primary_key=True)
    to = models.EmailField(max_length=254)
    subject = models.CharField(max_length=200)
    body = models.TextField()  # api.crypto ciphertext
    created_at = models.DateTimeField()
    claimed_until = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=64, blank=True)  # the exception's type only

    class Meta:
        indexes = [models.Index(fields=["created_at"], name="outboundemail_created")]

    def __str__(self) -> str:
        return f"OutboundEmail {self.pk}"


class JobRun(models.Model):
    """One row per periodic job (``api.jobs``): when it last started, succeeded and failed,
    and how often it failed, so ``manage.py jobs_status`` shows a job that keeps failing.
    Written by the task wrapper; counters move with ``F()`` so two workers never lose a count.
    ``last_error`` is the exception's type only: messages can hold PHI."""

    name = models.CharField(max_length=64, primary_key=True)
    runs = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=64, blank=True)

    def __str__(self) -> str:
        return f"JobRun {self.name}"
