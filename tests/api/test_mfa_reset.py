"""``manage.py mfa_reset``: the audited identity-proofing path for a lost second factor (MFA-10)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from api.models import Role, TOTPDevice
from api.services.sessions import session_start
from audit.models import AuditEvent
from tests.api.mfa_support import T0, enrol, live_families
from tests.factories import DEFAULT_PASSWORD, make_user

pytestmark = pytest.mark.django_db


def reset(*args: str) -> str:
    out = StringIO()
    call_command("mfa_reset", *args, stdout=out)
    return out.getvalue()


def test_mfa_10_reset_removes_the_factor_ends_sessions_and_records_the_reason():
    user = make_user(role=Role.THERAPIST, email="dr.who@example.test")
    enrol(user)
    session_start(user=user, amr=["pwd", "otp", "mfa"], now=T0)

    out = reset("--email", "DR.WHO@example.test", "--reason", "ID checked\r\non a video call #42")

    user.refresh_from_db()
    assert not user.mfa_enabled
    assert not TOTPDevice.objects.filter(user=user).exists()
    assert live_families(user) == set()
    event = AuditEvent.objects.get(action="auth.mfa.reset")
    assert event.actor_label == "operator"
    assert event.details["reason"] == "ID checked on a video call #42"  # one line, no CR/LF
    assert "1 device(s) removed" in out
    assert "must enrol a new authenticator" in out


def test_mfa_10_after_a_reset_staff_sign_in_with_the_password_only_and_must_enrol_again():
    user = make_user(role=Role.COMPLIANCE_OFFICER)
    enrol(user)
    reset("--email", user.email, "--reason", "ticket 7")
    sign_in = APIClient().post(
        "/api/v1/auth/token", {"email": user.email, "password": DEFAULT_PASSWORD}
    )
    assert sign_in.status_code == 200
    assert sign_in.json()["mfa_required"] is False
    assert sign_in.json()["mfa_enrolment_required"] is True


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501])
def test_mfa_10_a_reset_needs_a_reason(reason):
    user = make_user(role=Role.THERAPIST)
    enrol(user)
    with pytest.raises(CommandError):
        reset("--email", user.email, "--reason", reason)
    user.refresh_from_db()
    assert user.mfa_enabled
    assert not AuditEvent.objects.filter(action="auth.mfa.reset").exists()


def test_an_unknown_email_is_refused():
    with pytest.raises(CommandError, match="No user has this email address."):
        reset("--email", "nobody@example.test", "--reason", "ticket 8")
    assert not AuditEvent.objects.filter(action="auth.mfa.reset").exists()
