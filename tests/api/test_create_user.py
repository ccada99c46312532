"""``manage.py create_user``: operators create staff accounts from the shell."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from api.models import Role, TOTPDevice, User
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

GOOD = "violet staple orbit 93 lantern"


def run(*args: str) -> str:
    out = StringIO()
    call_command("create_user", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def env_password(monkeypatch: pytest.MonkeyPatch):
    def set_password(value: str) -> str:
        monkeypatch.setenv("NEW_USER_PASSWORD", value)
        return "NEW_USER_PASSWORD"

    return set_password


def test_creates_a_therapist_with_the_password_from_the_environment(env_password):
    out = run(
        "--email",
        " Dr.Ada@Example.TEST ",
        "--role",
        "therapist",
        "--full-name",
        "Ada Lovelace",
        "--password-from-env",
        env_password(GOOD),
    )
    user = User.objects.get()
    assert (user.email, user.role, user.full_name) == (
        "dr.ada@example.test",
        Role.THERAPIST,
        "Ada Lovelace",
    )
    assert user.check_password(GOOD)
    assert user.password.startswith("argon2")
    assert (user.is_superuser, user.mfa_enabled) == (False, False)
    assert f"Created therapist dr.ada@example.test (id {user.pk})." in out
    assert "must enrol a second factor" in out
    assert GOOD not in out
    event = AuditEvent.objects.get(action="auth.user.created")
    assert (event.actor_label, event.resource_id, event.details) == (
        "operator",
        str(user.pk),
        {"role": "therapist", "via": "create_user"},
    )


def test_with_totp_enrols_a_confirmed_device_and_prints_its_uri_once(env_password):
    out = run(
        "--email",
        "co@example.test",
        "--role",
        "compliance_officer",
        "--password-from-env",
        env_password(GOOD),
        "--with-totp",
    )
    user = User.objects.get()
    device = TOTPDevice.objects.get(user=user)
    assert device.confirmed and user.mfa_enabled
    uris = [line for line in out.splitlines() if line.startswith("otpauth://")]
    assert len(uris) == 1
    assert uris[0].startswith("otpauth://totp/Telehealth%3Aco%40example.test?secret=")
    assert "it is not shown again" in out
    assert AuditEvent.objects.filter(action="auth.mfa.enrolled").count() == 1
    assert "secret" not in str(AuditEvent.objects.values_list("details", flat=True))


def test_an_admin_gets_the_admin_site(env_password):
    run(
        "--email", "root@example.test", "--role", "admin", "--password-from-env", env_password(GOOD)
    )
    user = User.objects.get()
    assert user.is_superuser and user.is_staff


def test_the_password_is_asked_twice_at_the_prompt(monkeypatch):
    answers = iter([GOOD, GOOD])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    run("--email", "t@example.test", "--role", "therapist")
    assert User.objects.get().check_password(GOOD)


def test_two_different_passwords_at_the_prompt_are_refused(monkeypatch):
    answers = iter([GOOD, GOOD + "x"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    with pytest.raises(CommandError, match="do not match"):
        run("--email", "t@example.test", "--role", "therapist")
    assert not User.objects.exists()


@pytest.mark.parametrize("role", ["doctor", "superuser", "Therapist", ""])
def test_an_unknown_role_is_refused_with_the_list_of_roles(env_password, role):
    with pytest.raises(CommandError) as refused:
        run("--email", "t@example.test", "--role", role, "--password-from-env", env_password(GOOD))
    assert str(refused.value) == (
        f"Unknown role {role!r}: use one of client, therapist, compliance_officer, admin."
    )
    assert not User.objects.exists()
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short7!", "too short"),
        ("password123", "too common"),
        ("83749201938475", "entirely numeric"),
        ("ada.lovelace@example.test", "too similar"),
    ],
)
def test_weak_passwords_are_refused_with_the_validators_message(env_password, password, reason):
    with pytest.raises(CommandError) as refused:
        run(
            "--email",
            "ada.lovelace@example.test",
            "--role",
            "therapist",
            "--password-from-env",
            env_password(password),
        )
    assert str(refused.value).startswith("Password refused: ")
    assert reason in str(refused.value)
    assert password not in str(refused.value)
    assert not User.objects.exists()


def test_an_unset_environment_variable_is_refused(monkeypatch):
    monkeypatch.delenv("NOPE_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="NOPE_PASSWORD is unset or empty"):
        run(
            "--email",
            "t@example.test",
            "--role",
            "therapist",
            "--password-from-env",
            "NOPE_PASSWORD",
        )
    assert not User.objects.exists()


def test_an_invalid_or_taken_email_is_refused(env_password):
    with pytest.raises(CommandError, match="not a valid email"):
        run(
            "--email", "not-an-email", "--role", "client", "--password-from-env", env_password(GOOD)
        )
    run("--email", "x@example.test", "--role", "client", "--password-from-env", env_password(GOOD))
    with pytest.raises(CommandError, match="already exists"):
        run(
            "--email",
            "X@example.test",
            "--role",
            "admin",
            "--password-from-env",
            env_password(GOOD),
        )
    assert User.objects.get().role == Role.CLIENT
