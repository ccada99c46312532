"""``GET/PATCH /api/v1/me``: the signed-in account."""

from __future__ import annotations

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from api.models import User
from api.services.sessions import session_start
from audit.models import AuditEvent

ME = "/api/v1/me"


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    """Nothing here is about password hashing: spare each persona the Argon2 cost."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _api(user: User, amr: list[str]) -> APIClient:
    api = APIClient()
    access = session_start(user=user, amr=amr, now=timezone.now()).access
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return api


def _row(user: User) -> dict:
    return User.objects.values().get(pk=user.pk)


def test_me_shows_the_account(client_user):
    response = _api(client_user, ["pwd"]).get(ME)
    assert response.status_code == 200
    assert response.json() == {
        "id": str(client_user.pk),
        "email": client_user.email,
        "full_name": client_user.full_name,
        "role": "client",
        "mfa_enabled": False,
        "date_joined": client_user.date_joined.isoformat().replace("+00:00", "Z"),
    }
    assert response["Cache-Control"] == "no-store"


def test_staff_without_mfa_can_see_their_account(therapist):
    response = _api(therapist, ["pwd"]).get(ME)
    assert response.status_code == 200
    assert response.json()["role"] == "therapist"


def test_me_needs_an_access_token(db):
    response = APIClient().get(ME)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_patch_changes_the_name(client_user):
    response = _api(client_user, ["pwd"]).patch(ME, {"full_name": "Ada L."}, format="json")
    assert response.status_code == 200
    assert response.json()["full_name"] == "Ada L."
    assert User.objects.get(pk=client_user.pk).full_name == "Ada L."
    [event] = AuditEvent.objects.filter(action="account.profile.updated")
    assert event.actor_id == client_user.pk
    assert event.details == {"fields": ["full_name"]}
    assert "Ada" not in str(event.details)


def test_an_empty_patch_changes_nothing(client_user):
    before = _row(client_user)
    response = _api(client_user, ["pwd"]).patch(ME, {}, format="json")
    assert response.status_code == 200
    assert _row(client_user) == before
    assert not AuditEvent.objects.filter(action="account.profile.updated").exists()


@pytest.mark.parametrize(
    "field,value",
    [
        ("role", "admin"),
        ("role", "therapist"),
        ("is_staff", True),
        ("is_superuser", True),
        ("is_active", False),
        ("email", "new@example.test"),
        ("mfa_enabled", True),
        ("password", "a whole new passphrase"),
        ("failed_login_count", 0),
        ("id", "00000000-0000-0000-0000-000000000001"),
    ],
)
def test_az_02_patch_cannot_set_other_fields(client_user, field, value):
    before = _row(client_user)
    response = _api(client_user, ["pwd"]).patch(
        ME, {"full_name": "Mallory", field: value}, format="json"
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["errors"] == [
        {"field": field, "code": "unknown_field", "message": "This field is not allowed."}
    ]
    assert _row(client_user) == before  # not even the allowed field changed


@pytest.mark.parametrize(
    "body", [{"full_name": "x" * 151}, {"full_name": None}, {"full_name": ["a"]}, ["a"], "a"]
)
def test_invalid_patch_is_400_and_changes_nothing(client_user, body):
    before = _row(client_user)
    response = _api(client_user, ["pwd"]).patch(ME, body, format="json")
    assert response.status_code == 400
    assert _row(client_user) == before


@pytest.mark.parametrize("value", [0, 12.5, True, {"a": "b"}])
def test_api_04_a_name_that_is_not_text_is_400_not_coerced(client_user, value):
    """API-04 (found by schemathesis): ``{"full_name": 0}`` was saved as "0"."""
    before = _row(client_user)
    response = _api(client_user, ["pwd"]).patch(ME, {"full_name": value}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "full_name", "code": "invalid", "message": "Not a valid string."}
    ]
    assert _row(client_user) == before


def test_other_methods_are_not_allowed(client_user):
    api = _api(client_user, ["pwd"])
    assert api.put(ME, {"full_name": "x"}, format="json").status_code == 405
    assert api.delete(ME).status_code == 405
    assert api.post(ME, {}, format="json").status_code == 405
