"""Password change (``POST /api/v1/me/password``) and reset (``/api/v1/auth/password/reset``).

JWT-11: a change ends the account's other sessions (this one keeps its tokens); a reset ends
all of them. MFA-10: a reset leaves the second factor required.
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from django.utils.http import urlsafe_base64_encode
from rest_framework.test import APIClient

from api import tokens
from api.models import TokenFamily, User
from api.services.sessions import session_start
from api.views.auth import RESET_ACCEPTED
from audit.models import AuditEvent
from tests.factories import DEFAULT_PASSWORD

NEW_PASSWORD = "violet harbour kite 31"
RESET = "/api/v1/auth/password/reset"
CONFIRM = "/api/v1/auth/password/reset/confirm"


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    """Argon2 itself is covered in test_auth_login (LGN-05); here it would only cost time."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _sign_in(email: str, password: str):
    return APIClient().post(
        "/api/v1/auth/token", {"email": email, "password": password}, format="json"
    )


def _api(access: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return api


def _change(access: str, current: str, new: str):
    return _api(access).post(
        "/api/v1/me/password",
        {"current_password": current, "new_password": new},
        format="json",
    )


def _live_families(user: User) -> set:
    return set(
        TokenFamily.objects.filter(user=user, revoked_at__isnull=True).values_list("pk", flat=True)
    )


# --- change -------------------------------------------------------------------------------------


def test_jwt_11_password_change_ends_the_other_sessions_and_keeps_this_one(
    client_user, mailoutbox, django_capture_on_commit_callbacks
):
    this = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    others = [session_start(user=client_user, amr=["pwd"], now=timezone.now()) for _ in range(2)]
    with django_capture_on_commit_callbacks(execute=True):
        response = _change(this.access, DEFAULT_PASSWORD, NEW_PASSWORD)
    assert response.status_code == 204
    assert _live_families(client_user) == {this.family_id}
    assert set(
        TokenFamily.objects.filter(pk__in=[o.family_id for o in others]).values_list(
            "revoked_reason", flat=True
        )
    ) == {"password_changed"}
    for other in others:
        assert _api(other.access).get("/api/v1/me").status_code == 401
    assert _api(this.access).get("/api/v1/me").status_code == 200
    refreshed = APIClient().post(
        "/api/v1/auth/token/refresh", {"refresh": this.refresh}, format="json"
    )
    assert refreshed.status_code == 200
    assert _sign_in(client_user.email, DEFAULT_PASSWORD).status_code == 401
    assert _sign_in(client_user.email, NEW_PASSWORD).status_code == 200
    assert [m.to for m in mailoutbox] == [[client_user.email]]
    [event] = AuditEvent.objects.filter(action="auth.password.changed")
    assert event.actor_id == client_user.pk
    assert event.details == {"families_revoked": 2}


def test_a_wrong_current_password_changes_nothing_and_counts_as_a_failure(client_user):
    this = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    other = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    hash_before = User.objects.get(pk=client_user.pk).password
    response = _change(this.access, "not my password", NEW_PASSWORD)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_current_password"
    assert response.json()["errors"][0]["field"] == "current_password"
    client_user.refresh_from_db()
    assert client_user.password == hash_before
    assert client_user.failed_login_count == 1
    assert _live_families(client_user) == {this.family_id, other.family_id}
    [event] = AuditEvent.objects.filter(action="auth.password.change_failed")
    assert event.outcome == "denied"


@override_settings(LOGIN_MAX_FAILURES_BEFORE_BACKOFF=2)
def test_wrong_current_passwords_lead_to_the_sign_in_back_off(client_user):
    this = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    User.objects.filter(pk=client_user.pk).update(failed_login_count=5)
    assert _change(this.access, "guess", NEW_PASSWORD).status_code == 400  # locks for 16 s
    locked = _change(this.access, DEFAULT_PASSWORD, NEW_PASSWORD)
    assert locked.status_code == 429
    assert locked.json()["code"] == "too_many_failures"
    assert "Retry-After" in locked
    assert User.objects.get(pk=client_user.pk).check_password(DEFAULT_PASSWORD)


@pytest.mark.parametrize(
    "new,code",
    [("short1!", "password_too_short"), ("password123", "password_too_common")],
)
def test_a_weak_new_password_is_refused_and_nothing_changes(client_user, new, code):
    this = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    other = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    response = _change(this.access, DEFAULT_PASSWORD, new)
    assert response.status_code == 400
    assert ("new_password", code) in [(e["field"], e["code"]) for e in response.json()["errors"]]
    assert User.objects.get(pk=client_user.pk).check_password(DEFAULT_PASSWORD)
    assert _live_families(client_user) == {this.family_id, other.family_id}


def test_password_change_refuses_unknown_fields(client_user):
    this = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    response = _api(this.access).post(
        "/api/v1/me/password",
        {"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD, "role": "admin"},
        format="json",
    )
    assert response.status_code == 400
    assert User.objects.get(pk=client_user.pk).check_password(DEFAULT_PASSWORD)


def test_password_change_needs_an_access_token(client_user):
    response = APIClient().post(
        "/api/v1/me/password",
        {"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD},
        format="json",
    )
    assert response.status_code == 401


def test_staff_change_their_password_with_an_mfa_session(therapist):
    this = session_start(user=therapist, amr=["pwd", "otp", "mfa"], now=timezone.now())
    assert _change(this.access, DEFAULT_PASSWORD, NEW_PASSWORD).status_code == 204


# --- reset --------------------------------------------------------------------------------------


def _request_reset(email: str, **extra):
    return APIClient().post(RESET, {"email": email}, format="json", **extra)


def _reset_link(mail) -> tuple[str, str]:
    uid = re.search(r"uid: (\S+)", mail.body).group(1)
    token = re.search(r"token: (\S+)", mail.body).group(1)
    return uid, token


def _confirm(uid: str, token: str, new_password: str = NEW_PASSWORD):
    return APIClient().post(
        CONFIRM, {"uid": uid, "token": token, "new_password": new_password}, format="json"
    )


def test_reset_request_answers_alike_and_emails_only_a_real_account(
    client_user, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        known = _request_reset(client_user.email.upper())
        unknown = _request_reset("nobody@example.test")
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json() == {"detail": RESET_ACCEPTED}
    assert [m.to for m in mailoutbox] == [[client_user.email]]
    events = list(AuditEvent.objects.filter(action="auth.password.reset_requested").order_by("pk"))
    assert [(e.outcome, e.resource_id) for e in events] == [
        ("allowed", str(client_user.pk)),
        ("denied", ""),
    ]


def test_jwt_11_reset_sets_the_password_and_ends_every_session(
    client_user, mailoutbox, django_capture_on_commit_callbacks
):
    sessions = [session_start(user=client_user, amr=["pwd"], now=timezone.now()) for _ in range(2)]
    User.objects.filter(pk=client_user.pk).update(
        failed_login_count=9, locked_until=timezone.now() + timedelta(minutes=5)
    )
    with django_capture_on_commit_callbacks(execute=True):
        _request_reset(client_user.email)
    uid, token = _reset_link(mailoutbox[0])
    with django_capture_on_commit_callbacks(execute=True):
        response = _confirm(uid, token)
    assert response.status_code == 204
    assert not _live_families(client_user)
    assert set(
        TokenFamily.objects.filter(user=client_user).values_list("revoked_reason", flat=True)
    ) == {"password_changed"}
    for s in sessions:
        assert _api(s.access).get("/api/v1/me").status_code == 401
    client_user.refresh_from_db()
    assert (client_user.failed_login_count, client_user.locked_until) == (0, None)
    assert _sign_in(client_user.email, NEW_PASSWORD).status_code == 200
    assert _sign_in(client_user.email, DEFAULT_PASSWORD).status_code == 401
    assert mailoutbox[-1].subject == "Your password was reset"
    [event] = AuditEvent.objects.filter(action="auth.password.reset")
    assert event.actor_id == client_user.pk
    assert event.details == {"families_revoked": 2}


def test_a_reset_token_works_once(client_user, mailoutbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _request_reset(client_user.email)
    uid, token = _reset_link(mailoutbox[0])
    assert _confirm(uid, token).status_code == 204
    again = _confirm(uid, token, "yet another passphrase 5")
    assert again.status_code == 400
    assert again.json()["code"] == "invalid_reset_token"
    assert User.objects.get(pk=client_user.pk).check_password(NEW_PASSWORD)


@pytest.mark.parametrize(
    "uid,token",
    [
        ("bad", "bad"),
        ("", "x"),
        ("MTIz", "abc-def"),  # "123": not a user id
        ("!!!", "x"),
        (urlsafe_base64_encode(str(uuid.UUID(int=1)).encode()), "a-b"),  # no such user
    ],
)
def test_an_invalid_reset_link_is_400_and_changes_nothing(client_user, uid, token):
    hash_before = User.objects.get(pk=client_user.pk).password
    response = _confirm(uid, token)
    assert response.status_code == 400
    assert User.objects.get(pk=client_user.pk).password == hash_before


def test_a_reset_token_of_another_user_is_refused(
    client_user, outsider, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        _request_reset(outsider.email)
        _request_reset(client_user.email)
    outsider_uid, _ = _reset_link(mailoutbox[0])
    _, client_token = _reset_link(mailoutbox[1])
    response = _confirm(outsider_uid, client_token)
    assert response.status_code == 400
    assert User.objects.get(pk=outsider.pk).check_password(DEFAULT_PASSWORD)
    assert AuditEvent.objects.filter(action="auth.password.reset_failed").count() == 1


def test_a_weak_password_at_reset_is_refused_and_the_token_stays_usable(
    client_user, mailoutbox, django_capture_on_commit_callbacks
):
    session = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        _request_reset(client_user.email)
    uid, token = _reset_link(mailoutbox[0])
    weak = _confirm(uid, token, "password")
    assert weak.status_code == 400
    assert weak.json()["code"] == "validation_error"
    assert _live_families(client_user) == {session.family_id}
    assert _confirm(uid, token).status_code == 204


def test_mfa_10_password_reset_does_not_bypass_mfa(
    therapist, mailoutbox, django_capture_on_commit_callbacks
):
    """MFA-10: after a reset, an enrolled account's password step still yields only a challenge."""
    User.objects.filter(pk=therapist.pk).update(mfa_enabled=True)
    with django_capture_on_commit_callbacks(execute=True):
        _request_reset(therapist.email)
    uid, token = _reset_link(mailoutbox[0])
    assert _confirm(uid, token).status_code == 204
    therapist.refresh_from_db()
    assert therapist.mfa_enabled is True
    body = _sign_in(therapist.email, NEW_PASSWORD).json()
    assert body["mfa_required"] is True
    assert set(body) == {"mfa_required", "mfa_token", "expires_in"}
    tokens.decode(body["mfa_token"], expected_typ=tokens.MFA_PENDING, now=timezone.now())
    assert not TokenFamily.objects.filter(user=therapist).exists()


def test_reset_of_an_inactive_account_sends_nothing(
    client_user, mailoutbox, django_capture_on_commit_callbacks
):
    User.objects.filter(pk=client_user.pk).update(is_active=False)
    with django_capture_on_commit_callbacks(execute=True):
        assert _request_reset(client_user.email).status_code == 202
    assert mailoutbox == []


@override_settings(PASSWORD_RESET_EMAILS_PER_ADDRESS_PER_HOUR=2)
def test_reset_emails_to_one_address_are_capped(
    client_user, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        answers = [
            _request_reset(client_user.email, REMOTE_ADDR=f"198.51.100.{i}") for i in range(4)
        ]
    assert [a.status_code for a in answers] == [202] * 4
    assert len(mailoutbox) == 2


@override_settings(RATE_LIMIT_PASSWORD_RESET_PER_IP_PER_HOUR=2)
def test_reset_requests_are_limited_per_ip(db):
    for _ in range(2):
        assert _request_reset("nobody@example.test", REMOTE_ADDR="198.51.100.5").status_code == 202
    limited = _request_reset("nobody@example.test", REMOTE_ADDR="198.51.100.5")
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limited"


def test_jwt_15_the_reset_token_is_never_logged_or_audited(
    client_user, mailoutbox, caplog, django_capture_on_commit_callbacks
):
    with caplog.at_level(logging.DEBUG):
        with django_capture_on_commit_callbacks(execute=True):
            _request_reset(client_user.email)
        uid, token = _reset_link(mailoutbox[0])
        with django_capture_on_commit_callbacks(execute=True):
            assert _confirm(uid, token + "x").status_code == 400
            assert _confirm(uid, token).status_code == 204
    assert token not in caplog.text
    assert token not in str(list(AuditEvent.objects.values()))
    assert NEW_PASSWORD not in caplog.text
    assert NEW_PASSWORD not in str(list(AuditEvent.objects.values()))
