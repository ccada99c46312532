"""Accounts: self-registration, profile, password change and reset, deactivation.

Registration and reset requests answer alike whether or not the address has an account (no
enumeration oracle): a taken address is told by email instead, and the password is hashed on
both paths so the timing matches too. Passwords go through Django's validators as given: no
trimming, truncation or case folding.

Emails are sent once the transaction commits (``transaction.on_commit``); a delivery failure is
logged (without the address) and never undoes the change.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode

from api.auditing import Outcome, audit_event_record
from api.errors import DomainError
from api.models import Role, TokenFamily, User, normalize_email
from api.services.auth import (
    account_failure_record,
    account_failures_reset,
    account_lock_check,
    token_families_revoke,
)
from api.services.mail import mail_queue
from api.services.ratelimit import counter_incr, rate_limit_ip


class PasswordRejected(DomainError):
    """The new password fails the password policy (400, one error per failed rule)."""

    code = "validation_error"

    def __init__(self, *, field: str, error: DjangoValidationError):
        errors = [
            {"field": field, "code": item.code or "invalid", "message": " ".join(item.messages)}
            for item in error.error_list
        ]
        super().__init__("The request has invalid fields.", extra={"errors": errors})


class CurrentPasswordIncorrect(DomainError):
    code = "invalid_current_password"

    def __init__(self) -> None:
        super().__init__(
            "The current password is incorrect.",
            extra={
                "errors": [
                    {
                        "field": "current_password",
                        "code": "invalid",
                        "message": "The current password is incorrect.",
                    }
                ]
            },
        )


class ResetTokenInvalid(DomainError):
    code = "invalid_reset_token"

    def __init__(self) -> None:
        super().__init__("The password reset link is invalid or has expired.")


def password_policy_check(*, password: str, user: User, field: str) -> None:
    """Raise ``PasswordRejected`` unless ``password`` passes ``AUTH_PASSWORD_VALIDATORS``."""
    try:
        validate_password(password, user=user)
    except DjangoValidationError as exc:
        raise PasswordRejected(field=field, error=exc) from exc


# --- Registration and profile -----------------------------------------------------------------


def user_register(
    *, email: str, password: str, full_name: str, request: HttpRequest, now: datetime
) -> None:
    """Create a client account, or tell the owner of a taken address by email (same answer)."""
    rate_limit_ip(
        request=request,
        scope="register",
        limit=settings.RATE_LIMIT_REGISTER_PER_IP_PER_HOUR,
        window_seconds=3600,
        now=now,
    )
    email = normalize_email(email)
    user = User(email=email, full_name=full_name, role=Role.CLIENT, date_joined=now)
    password_policy_check(password=password, user=user, field="password")
    user.set_password(password)  # hashed on both paths: the timing does not tell them apart
    if not User.objects.filter(email=email).exists():
        try:
            with transaction.atomic():
                user.save(force_insert=True)
                audit_event_record(
                    action="auth.registered",
                    actor=user,
                    request=request,
                    resource_type="user",
                    resource_id=str(user.pk),
                )
                mail_queue(
                    to=email,
                    subject="Welcome to Telehealth",
                    body="Your account is ready. Sign in with this email address.",
                    now=now,
                )
            return
        except IntegrityError:
            pass  # registered by a parallel request meanwhile: the address is taken
    existing = User.objects.filter(email=email).values_list("pk", flat=True).first()
    with transaction.atomic():
        audit_event_record(
            action="auth.register.duplicate",
            outcome=Outcome.DENIED,
            request=request,
            resource_type="user",
            resource_id=str(existing or ""),
        )
        mail_queue(
            to=email,
            subject="Someone tried to register with your address",
            body=(
                "An account already exists for this email address, so nothing was created. "
                "If this was you, sign in or reset your password. If not, ignore this email."
            ),
            now=now,
        )


def user_profile_update(*, user: User, full_name: str, request: HttpRequest) -> User:
    with transaction.atomic():
        user.full_name = full_name
        user.save(update_fields=["full_name"])
        audit_event_record(
            action="account.profile.updated",
            actor=user,
            request=request,
            resource_type="user",
            resource_id=str(user.pk),
            details={"fields": ["full_name"]},
        )
    return user


# --- Passwords --------------------------------------------------------------------------------


def user_password_change(
    *,
    user: User,
    current_password: str,
    new_password: str,
    keep_family_id: uuid.UUID | None,
    request: HttpRequest,
    now: datetime,
) -> int:
    """Change a signed-in user's password; end every other sign-in. Return how many ended.

    A wrong current password counts towards the account's sign-in back-off, so a stolen access
    token cannot be used to guess the password.
    """
    account_lock_check(user=user, request=request, now=now)
    if not user.check_password(current_password):
        account_failure_record(
            user=user, action="auth.password.change_failed", request=request, now=now
        )
        raise CurrentPasswordIncorrect()
    password_policy_check(password=new_password, user=user, field="new_password")
    with transaction.atomic():
        user.set_password(new_password)
        user.save(update_fields=["password"])
        account_failures_reset(user=user)
        revoked = token_families_revoke(
            user=user,
            reason=TokenFamily.RevokeReason.PASSWORD_CHANGED,
            now=now,
            keep_family_id=keep_family_id,
        )
        audit_event_record(
            action="auth.password.changed",
            actor=user,
            request=request,
            resource_type="user",
            resource_id=str(user.pk),
            details={"families_revoked": revoked},
        )
        mail_queue(
            to=user.email,
            subject="Your password was changed",
            body="Your password was changed and your other sessions were signed out. "
            "If this was not you, reset your password now.",
            now=now,
        )
    return revoked


def user_password_reset_request(*, email: str, request: HttpRequest, now: datetime) -> None:
    """Email a reset token to an active account's address; the same answer for any address.

    The token (Django's ``PasswordResetTokenGenerator``) goes only into the email: it is valid
    until the password changes or ``PASSWORD_RESET_TIMEOUT`` passes.
    """
    rate_limit_ip(
        request=request,
        scope="password_reset",
        limit=settings.RATE_LIMIT_PASSWORD_RESET_PER_IP_PER_HOUR,
        window_seconds=3600,
        now=now,
    )
    email = normalize_email(email)
    sent = counter_incr(scope="password_reset:address", key=email, window_seconds=3600, now=now)
    user = User.objects.filter(email=email, is_active=True).first()
    with transaction.atomic():
        if user is None or sent > settings.PASSWORD_RESET_EMAILS_PER_ADDRESS_PER_HOUR:
            audit_event_record(
                action="auth.password.reset_requested",
                outcome=Outcome.DENIED,
                request=request,
                resource_type="user",
                resource_id=str(user.pk) if user else "",
                details={"reason": "unknown_account" if user is None else "too_many_emails"},
            )
            return
        audit_event_record(
            action="auth.password.reset_requested",
            request=request,
            resource_type="user",
            resource_id=str(user.pk),
        )
        uid = urlsafe_base64_encode(force_bytes(user.pk))
        token = default_token_generator.make_token(user)
        mail_queue(
            to=user.email,
            subject="Reset your password",
            body=(
                "Someone asked to reset the password of your account. If it was you, enter "
                f"these in the app to choose a new password:\n\nuid: {uid}\ntoken: {token}\n\n"
                "If it was not you, ignore this email: your password stays as it is."
            ),
            now=now,
        )


def _user_for_reset(*, uid: str, token: str) -> User | None:
    """The active user ``uid`` names, locked, if ``token`` is still valid for them."""
    try:
        pk = uuid.UUID(urlsafe_base64_decode(uid).decode("ascii"))
    except ValueError:
        return None
    user = User.objects.select_for_update().filter(pk=pk, is_active=True).first()
    if user is None or not default_token_generator.check_token(user, token):
        return None
    return user


def user_password_reset_confirm(
    *, uid: str, token: str, new_password: str, request: HttpRequest, now: datetime
) -> None:
    """Set a new password with a reset token and end every sign-in of the account.

    The second factor is untouched: an account with MFA still needs it to sign in. The user
    row is locked while the token is checked, so one token cannot be used twice in parallel.
    """
    rate_limit_ip(
        request=request,
        scope="password_reset_confirm",
        limit=settings.RATE_LIMIT_LOGIN_PER_IP_PER_MINUTE,
        window_seconds=60,
        now=now,
    )
    with transaction.atomic():
        user = _user_for_reset(uid=uid, token=token)
        if user is not None:
            password_policy_check(password=new_password, user=user, field="new_password")
            user.set_password(new_password)
            user.save(update_fields=["password"])
            account_failures_reset(user=user)
            revoked = token_families_revoke(
                user=user, reason=TokenFamily.RevokeReason.PASSWORD_CHANGED, now=now
            )
            audit_event_record(
                action="auth.password.reset",
                actor=user,
                request=request,
                resource_type="user",
                resource_id=str(user.pk),
                details={"families_revoked": revoked},
            )
            mail_queue(
                to=user.email,
                subject="Your password was reset",
                body="Your password was reset and every session was signed out. "
                "If this was not you, contact support now.",
                now=now,
            )
            return
        audit_event_record(
            action="auth.password.reset_failed",
            outcome=Outcome.DENIED,
            request=request,
            details={"reason": "invalid_token"},
        )
    raise ResetTokenInvalid()


# --- Deactivation -----------------------------------------------------------------------------


def user_deactivate(
    *, user: User, by: User | None, now: datetime, request: HttpRequest | None = None
) -> int:
    """Deactivate ``user`` and end every sign-in at once; return how many ended.

    ``by`` is the admin doing it (None: the system). The account can no longer sign in,
    refresh, or use an access token it already holds.
    """
    with transaction.atomic():
        User.objects.filter(pk=user.pk).update(is_active=False)
        user.is_active = False
        revoked = token_families_revoke(
            user=user, reason=TokenFamily.RevokeReason.DEACTIVATED, now=now
        )
        audit_event_record(
            action="account.deactivated",
            actor=by,
            actor_label="system" if by is None else "",
            request=request,
            resource_type="user",
            resource_id=str(user.pk),
            details={"families_revoked": revoked},
        )
    return revoked
