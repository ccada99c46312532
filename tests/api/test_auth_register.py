"""``POST /api/v1/auth/register``: client self-registration and the password policy (LGN-04)."""

from __future__ import annotations

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from api.models import User
from api.views.auth import REGISTER_ACCEPTED
from audit.models import AuditEvent
from tests.factories import DEFAULT_PASSWORD

REGISTER = "/api/v1/auth/register"
GOOD_PASSWORD = "plum lantern orbit 7"


def _register(payload: dict, **extra):
    return APIClient().post(REGISTER, payload, format="json", **extra)


def _new(email: str = "new.client@example.test", password: str = GOOD_PASSWORD, **more) -> dict:
    return {"email": email, "password": password, "full_name": "New Client", **more}


def _sign_in(email: str, password: str) -> int:
    return (
        APIClient()
        .post("/api/v1/auth/token", {"email": email, "password": password}, format="json")
        .status_code
    )


def test_a_client_registers_and_can_sign_in(db, mailoutbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = _register(_new(email="New.Client@Example.test"))
    assert response.status_code == 202
    assert response.json() == {"detail": REGISTER_ACCEPTED}
    user = User.objects.get()
    assert user.email == "new.client@example.test"
    assert user.role == "client"
    assert user.full_name == "New Client"
    assert user.is_active and not user.is_superuser and not user.mfa_enabled
    assert user.password.startswith("argon2$argon2id$")
    assert [m.to for m in mailoutbox] == [["new.client@example.test"]]
    assert GOOD_PASSWORD not in mailoutbox[0].body
    assert _sign_in("new.client@example.test", GOOD_PASSWORD) == 200
    [event] = AuditEvent.objects.filter(action="auth.registered")
    assert event.actor_id == user.pk
    assert "new.client" not in str(event.details)


def test_a_taken_address_gets_the_same_answer_and_its_owner_an_email(
    client_user, mailoutbox, django_capture_on_commit_callbacks
):
    before = User.objects.values().get(pk=client_user.pk)
    with django_capture_on_commit_callbacks(execute=True):
        taken = _register(_new(email=client_user.email.upper(), password="another pass phrase 9"))
        fresh = _register(_new(email="someone.else@example.test"))
    assert taken.status_code == fresh.status_code == 202
    assert taken.json() == fresh.json()
    assert User.objects.filter(email=client_user.email).count() == 1
    assert User.objects.values().get(pk=client_user.pk) == before  # password, name unchanged
    assert [m.to for m in mailoutbox] == [[client_user.email], ["someone.else@example.test"]]
    assert "already exists" in mailoutbox[0].body
    [event] = AuditEvent.objects.filter(action="auth.register.duplicate")
    assert event.outcome == "denied"
    assert event.resource_id == str(client_user.pk)
    assert _sign_in(client_user.email, "another pass phrase 9") == 401


@pytest.mark.parametrize(
    "field,value",
    [
        ("role", "admin"),
        ("role", "therapist"),
        ("is_staff", True),
        ("is_superuser", True),
        ("mfa_enabled", True),
        ("is_active", False),
        ("id", "00000000-0000-0000-0000-000000000001"),
    ],
)
def test_az_02_registration_cannot_set_privileged_fields(db, field, value):
    response = _register(_new(**{field: value}))
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": field, "code": "unknown_field", "message": "This field is not allowed."}
    ]
    assert not User.objects.exists()


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"email": "x@example.test", "password": GOOD_PASSWORD},
        {"email": "not-an-email", "password": GOOD_PASSWORD, "full_name": "A"},
        {"email": "x@example.test", "password": GOOD_PASSWORD, "full_name": "A" * 151},
        {"email": "x@example.test", "password": 12345678901234, "full_name": "A"},
        [],
    ],
    ids=["empty", "no-name", "bad-email", "long-name", "number-password", "list"],
)
def test_malformed_registration_is_400_and_creates_nothing(db, payload):
    response = _register(payload)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert not User.objects.exists()


# --- LGN-04: password policy ------------------------------------------------------------------


def _errors(response) -> list[tuple[str, str]]:
    return [(e["field"], e["code"]) for e in response.json()["errors"]]


def test_lgn_04_seven_characters_are_rejected(db):
    response = _register(_new(password="x7#kQ2m"))
    assert response.status_code == 400
    assert ("password", "password_too_short") in _errors(response)
    assert not User.objects.exists()


@pytest.mark.parametrize(
    "password",
    [
        "fifteen chars ok",  # 16 characters, lowercase letters and spaces only
        "abcdefghzyxwvut",  # exactly 15, no digits, no symbols, no upper case
        "a passphrase made of many small words, well over sixty-four characters long",
        "ü" * 200,  # Unicode, far past 64
    ],
    ids=["15+-words", "15-letters", "64+", "unicode-200"],
)
def test_lgn_04_long_passwords_without_composition_rules_are_accepted(db, password):
    response = _register(_new(password=password))
    assert response.status_code == 202
    assert _sign_in("new.client@example.test", password) == 200


@pytest.mark.parametrize("password", ["password123", "qwertyuiop", "iloveyou1", "1234567890"])
def test_lgn_04_common_passwords_are_rejected(db, password):
    response = _register(_new(password=password))
    assert response.status_code == 400
    assert ("password", "password_too_common") in _errors(response)
    assert not User.objects.exists()


def test_lgn_04_a_password_like_the_email_is_rejected(db):
    response = _register(_new(email="lanternorbit@example.test", password="lanternorbit"))
    assert response.status_code == 400
    assert ("password", "password_too_similar") in _errors(response)


def test_lgn_04_no_silent_truncation(db):
    password = "p" * 80 + " tail that matters"
    assert _register(_new(password=password)).status_code == 202
    assert _sign_in("new.client@example.test", password[:72]) == 401  # bcrypt would accept
    assert _sign_in("new.client@example.test", password[:-1]) == 401
    assert _sign_in("new.client@example.test", password) == 200


def test_lgn_04_no_case_folding_or_trimming(db):
    password = "  Plum Lantern Orbit  "
    assert _register(_new(password=password)).status_code == 202
    for variant in (password.lower(), password.upper(), password.strip()):
        assert _sign_in("new.client@example.test", variant) == 401
    assert _sign_in("new.client@example.test", password) == 200


def test_lgn_04_a_password_over_the_maximum_length_is_rejected_before_hashing(db):
    response = _register(_new(password="x" * 1025))
    assert response.status_code == 400
    assert _errors(response) == [("password", "max_length")]
    assert not User.objects.exists()
    assert _register(_new(password="a long one " * 93)).status_code == 202  # 1023 characters


# --- limits and idempotency -------------------------------------------------------------------


@override_settings(RATE_LIMIT_REGISTER_PER_IP_PER_HOUR=2)
def test_registration_is_limited_per_ip(db):
    for n in range(2):
        assert (
            _register(_new(email=f"c{n}@example.test"), REMOTE_ADDR="198.51.100.3").status_code
            == 202
        )
    limited = _register(_new(email="c3@example.test"), REMOTE_ADDR="198.51.100.3")
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limited"
    assert int(limited["Retry-After"]) <= 3600
    assert not User.objects.filter(email="c3@example.test").exists()
    assert _register(_new(email="c3@example.test"), REMOTE_ADDR="198.51.100.4").status_code == 202


def test_a_retried_registration_with_the_same_idempotency_key_is_replayed(db):
    first = _register(_new(), HTTP_IDEMPOTENCY_KEY="reg-1")
    again = _register(_new(), HTTP_IDEMPOTENCY_KEY="reg-1")
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again["Idempotency-Replayed"] == "true"
    assert User.objects.count() == 1
    other = _register(_new(email="other@example.test"), HTTP_IDEMPOTENCY_KEY="reg-1")
    assert other.status_code == 422
    assert not User.objects.filter(email="other@example.test").exists()


def test_the_password_never_reaches_the_audit_trail_or_stored_responses(db):
    from api.models import IdempotencyRecord

    _register(_new(), HTTP_IDEMPOTENCY_KEY="reg-2")
    _register(_new())  # the duplicate path
    dump = str(list(AuditEvent.objects.values())) + str(list(IdempotencyRecord.objects.values()))
    assert GOOD_PASSWORD not in dump
    assert "new.client@example.test" not in dump
    assert DEFAULT_PASSWORD not in dump
