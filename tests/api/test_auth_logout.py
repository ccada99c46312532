"""``POST /api/v1/auth/logout`` and ``/logout-all`` (JWT-11)."""

from __future__ import annotations

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from api.models import TokenFamily
from api.services.sessions import session_start
from audit.models import AuditEvent


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    """Nothing here is about password hashing: spare each persona the Argon2 cost."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _post(path: str, access: str | None):
    api = APIClient()
    if access:
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return api.post(path)


def _me(access: str) -> int:
    return APIClient().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {access}").status_code


def _refresh(token: str) -> int:
    return (
        APIClient()
        .post("/api/v1/auth/token/refresh", {"refresh": token}, format="json")
        .status_code
    )


def test_jwt_11_logout_ends_this_session_only(client_user):
    this = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    other = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    response = _post("/api/v1/auth/logout", this.access)
    assert response.status_code == 204
    assert response.content == b""
    assert _me(this.access) == 401
    assert _refresh(this.refresh) == 401
    family = TokenFamily.objects.get(pk=this.family_id)
    assert family.revoked_reason == "logout"
    assert _me(other.access) == 200
    assert TokenFamily.objects.get(pk=other.family_id).revoked_at is None


def test_jwt_11_logout_all_ends_every_session(client_user, outsider):
    sessions = [session_start(user=client_user, amr=["pwd"], now=timezone.now()) for _ in range(3)]
    theirs = session_start(user=outsider, amr=["pwd"], now=timezone.now())
    assert _post("/api/v1/auth/logout-all", sessions[0].access).status_code == 204
    for s in sessions:
        assert _me(s.access) == 401
        assert _refresh(s.refresh) == 401
    assert set(
        TokenFamily.objects.filter(user=client_user).values_list("revoked_reason", flat=True)
    ) == {"logout_all"}
    assert _me(theirs.access) == 200


def test_staff_without_mfa_can_log_out(therapist):
    pair = session_start(user=therapist, amr=["pwd"], now=timezone.now())
    assert _post("/api/v1/auth/logout", pair.access).status_code == 204
    assert _post("/api/v1/auth/logout-all", pair.access).status_code == 401  # already ended


@pytest.mark.parametrize("path", ["/api/v1/auth/logout", "/api/v1/auth/logout-all"])
def test_logout_needs_an_access_token(client_user, path):
    pair = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    for credential in (None, pair.refresh):
        response = _post(path, credential)
        assert response.status_code == 401
        assert response["Content-Type"] == "application/problem+json"
    assert TokenFamily.objects.get(pk=pair.family_id).revoked_at is None


def test_logout_twice_is_harmless(client_user):
    pair = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    assert _post("/api/v1/auth/logout", pair.access).status_code == 204
    assert _post("/api/v1/auth/logout", pair.access).status_code == 401


def test_lgn_06_logouts_are_audited(client_user):
    one = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    two = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    session_start(user=client_user, amr=["pwd"], now=timezone.now())
    _post("/api/v1/auth/logout", one.access)
    _post("/api/v1/auth/logout-all", two.access)
    [logout] = AuditEvent.objects.filter(action="auth.logout")
    assert logout.actor_id == client_user.pk
    assert logout.details == {"family_id": str(one.family_id)}
    [everywhere] = AuditEvent.objects.filter(action="auth.logout_all")
    assert everywhere.actor_id == client_user.pk
    assert everywhere.details == {"families_revoked": 2}
