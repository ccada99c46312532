"""Factories for test objects and authenticated API clients."""

from __future__ import annotations

import functools
import itertools
from datetime import datetime

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.test import Client
from django.utils import timezone
from django_otp import DEVICE_ID_SESSION_KEY
from rest_framework.test import APIClient

from api.models import Role, User, normalize_email
from api.services.sessions import session_start

DEFAULT_PASSWORD = "correct horse battery staple 42"
_counter = itertools.count(1)


@functools.cache
def _password_hash(password: str, hashers: tuple[str, ...]) -> str:
    """One real hash per password and hasher setting, shared by every test user: each check
    still runs the configured hasher, but creating a persona no longer pays Argon2's cost."""
    return make_password(password)


def make_user(
    *,
    role: str = Role.CLIENT,
    email: str | None = None,
    password: str = DEFAULT_PASSWORD,
    full_name: str | None = None,
    **extra: object,
) -> User:
    n = next(_counter)
    return User.objects.create(
        email=normalize_email(email or f"{role}-{n}@example.test"),
        password=_password_hash(password, tuple(settings.PASSWORD_HASHERS)),
        role=role,
        full_name=full_name if full_name is not None else f"Test {role.title()} {n}",
        **extra,
    )


def issue_access_token(user: User, *, mfa: bool = True, now: datetime | None = None) -> str:
    """The access token of a fresh, live session (what a completed sign-in hands out)."""
    amr = ["pwd", "otp", "mfa"] if mfa else ["pwd"]
    return session_start(user=user, amr=amr, now=now or timezone.now()).access


def api_client_for(user: User | None = None, *, mfa: bool = True) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_access_token(user, mfa=mfa)}")
    return client


def admin_browser(user: User) -> Client:
    """A Django admin session signed in with password and second factor (the admin site is
    django-otp's OTPAdminSite: without a verified device every page sends to the login)."""
    from api.models import TOTPDevice
    from api.services.mfa import mfa_totp_enrol_confirmed

    mfa_totp_enrol_confirmed(user=user, now=timezone.now())
    device = TOTPDevice.objects.get(user=user, confirmed=True)
    browser = Client()
    browser.force_login(user)
    session = browser.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return browser
