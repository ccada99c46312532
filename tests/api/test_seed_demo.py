"""``manage.py seed_demo``: the demo accounts ``make run`` loads, and how to sign in with them."""

from __future__ import annotations

import base64
import io

import pytest
from django.apps import apps
from django.contrib.auth.password_validation import validate_password
from django.core.management import CommandError, call_command
from django_otp.oath import TOTP

from api.management.commands.seed_demo import DEMO_PASSWORD
from api.models import Role, TOTPDevice, User

pytestmark = pytest.mark.django_db


@pytest.fixture
def debug(settings):
    settings.DEBUG = True
    # Eight accounts per run: a fast hasher keeps these tests quick (Argon2 is tested elsewhere).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def printed_secret(output: str, email: str) -> str:
    return next(line.split()[-1] for line in output.splitlines() if f" {email} " in line)


def base32(key: bytes) -> str:
    return base64.b32encode(key).decode("ascii").rstrip("=")


def row_counts() -> dict[str, int]:
    return {model._meta.label: model.objects.count() for model in apps.get_models()}


def sign_in(client, email: str, password: str = DEMO_PASSWORD):
    return client.post("/api/v1/auth/token", {"email": email, "password": password}, format="json")


def test_refuses_to_run_with_debug_off(settings):
    settings.DEBUG = False
    before = row_counts()
    with pytest.raises(CommandError, match="DJANGO_DEBUG=1"):
        call_command("seed_demo", stdout=io.StringIO())
    assert row_counts() == before


def test_creates_the_demo_people(debug):
    seed()
    by_role = {
        role: sorted(User.objects.filter(role=role).values_list("email", flat=True))
        for role in Role.values
    }
    assert by_role == {
        Role.THERAPIST: [
            "therapist1@example.test",
            "therapist2@example.test",
            "therapist3@example.test",
        ],
        Role.CLIENT: ["client1@example.test", "client2@example.test", "client3@example.test"],
        Role.COMPLIANCE_OFFICER: ["compliance@example.test"],
        Role.ADMIN: ["admin@example.test"],
    }
    assert all(
        name.startswith("Demo ") for name in User.objects.values_list("full_name", flat=True)
    )


def test_staff_have_a_confirmed_authenticator_and_clients_do_not(debug):
    seed()
    for user in User.objects.all():
        enrolled = TOTPDevice.objects.filter(user=user, confirmed=True).exists()
        assert enrolled is user.is_staff_role, user.email
        assert user.mfa_enabled is user.is_staff_role


def test_the_demo_password_passes_the_password_policy(debug):
    seed()
    for user in User.objects.all():
        validate_password(DEMO_PASSWORD, user=user)
        assert user.check_password(DEMO_PASSWORD)


def test_running_twice_changes_nothing(debug):
    seed()
    counts = row_counts()
    users = dict(User.objects.values_list("email", "pk"))
    devices = dict(TOTPDevice.objects.values_list("user__email", "encrypted_key"))

    seed()

    assert row_counts() == counts
    assert dict(User.objects.values_list("email", "pk")) == users
    assert dict(TOTPDevice.objects.values_list("user__email", "encrypted_key")) == devices


def test_prints_how_to_sign_in_with_each_staff_secret(debug):
    output = seed()
    assert f"Password of every demo account: {DEMO_PASSWORD}" in output
    assert "/api/v1/auth/token" in output
    assert "/api/docs/" in output
    for user in User.objects.all():
        device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
        if device is None:
            assert printed_secret(output, user.email) == "-"
            continue
        secret = printed_secret(output, user.email)
        assert secret == base32(device.key)
        label = f"Telehealth%3A{user.email.replace('@', '%40')}"
        assert f"otpauth://totp/{label}?secret={secret}&" in output


def test_a_second_run_prints_the_same_secrets_and_no_new_enrolment(debug):
    first = seed()
    second = seed()
    for user in User.objects.exclude(role=Role.CLIENT):
        assert printed_secret(second, user.email) == printed_secret(first, user.email)
    assert "otpauth://" not in second


def test_a_printed_staff_login_works_end_to_end(debug, anon_api):
    secret = printed_secret(seed(), "therapist1@example.test")
    challenge = sign_in(anon_api, "therapist1@example.test")
    assert challenge.status_code == 200
    assert challenge.json()["mfa_required"] is True

    code = f"{TOTP(base64.b32decode(secret)).token():06d}"
    signed_in = anon_api.post(
        "/api/v1/auth/mfa/verify",
        {"mfa_token": challenge.json()["mfa_token"], "code": code},
        format="json",
    )
    assert signed_in.status_code == 200
    me = anon_api.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {signed_in.json()['access']}")
    assert me.status_code == 200
    assert me.json()["email"] == "therapist1@example.test"


def test_a_printed_client_login_works_with_the_password_alone(debug, anon_api):
    seed()
    response = sign_in(anon_api, "client1@example.test")
    assert response.status_code == 200
    assert response.json()["mfa_required"] is False
    assert response.json()["access"]
