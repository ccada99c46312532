"""The MFA endpoints under /api/v1/auth/mfa/ and the two-step sign-in, over HTTP."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from django.contrib.auth.tokens import default_token_generator
from django.test import override_settings
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django_otp.oath import TOTP
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory
from rest_framework.views import APIView

from api import tokens
from api.models import Role, TokenFamily, TOTPDevice, User
from api.permissions import has_role
from api.services.sessions import TokenPair, mfa_challenge_issue, session_rotate, session_start
from audit.models import AuditEvent
from tests.api.mfa_support import (
    STEP,
    T0,
    Clock,
    code_at,
    device_state,
    enrol,
    freeze,
    live_families,
    wrong_code,
)
from tests.factories import DEFAULT_PASSWORD, make_user

pytestmark = pytest.mark.django_db

MFA = "/api/v1/auth/mfa/"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return freeze(monkeypatch)


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def signed_in(user: User, *, mfa: bool = False, at=T0) -> tuple[APIClient, TokenPair]:
    """A client with a new session of ``user`` (signed in at ``at``), and that session."""
    pair = session_start(user=user, amr=["pwd", "otp", "mfa"] if mfa else ["pwd"], now=at)
    return bearer(pair.access), pair


def code_for_secret(secret: str, at) -> str:
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    totp = TOTP(key)
    totp.time = at.timestamp()
    return f"{totp.token():06d}"


def assert_problem(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == code


class ProtectedView(APIView):
    """Stands for any endpoint reaching protected data: the default permission class."""

    def get(self, request):
        return Response({"ok": True})


class TherapistOnlyView(ProtectedView):
    permission_classes = [has_role(Role.THERAPIST)]


def call(view: type[APIView], token: str):
    request = APIRequestFactory().get("/protected", HTTP_AUTHORIZATION=f"Bearer {token}")
    return view.as_view()(request)


# --- MFA-01 / MFA-02: the two-step sign-in ------------------------------------------------------


def test_mfa_01_the_password_step_of_an_enrolled_user_gives_only_an_mfa_pending_token(clock):
    user = make_user(role=Role.THERAPIST)
    enrol(user)
    response = APIClient().post(
        "/api/v1/auth/token", {"email": user.email, "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["mfa_required"] is True
    assert "access" not in body and "refresh" not in body
    claims = tokens.decode(body["mfa_token"], expected_typ=tokens.MFA_PENDING, now=T0)
    assert (claims.exp - claims.iat, claims.amr) == (300, ("pwd",))
    assert not TokenFamily.objects.filter(user=user).exists()


def test_mfa_01_an_mfa_pending_token_is_refused_as_a_bearer_token_everywhere(clock):
    user = make_user(role=Role.THERAPIST)
    enrol(user)
    pending = mfa_challenge_issue(user=user, now=T0)
    client = bearer(pending)
    for response in (
        client.get(MFA),
        client.post(f"{MFA}totp", {"password": DEFAULT_PASSWORD}),
        client.get("/api/v1/me"),
        client.post("/api/v1/auth/logout"),
        call(ProtectedView, pending),
        call(TherapistOnlyView, pending),
    ):
        assert response.status_code == 401
    assert not TOTPDevice.objects.filter(user=user, confirmed=False).exists()


def test_mfa_02_the_full_sign_in_gives_tokens_with_otp_and_mfa_in_amr(clock):
    user = make_user(role=Role.THERAPIST)
    device = enrol(user)
    pending = APIClient().post(
        "/api/v1/auth/token", {"email": user.email, "password": DEFAULT_PASSWORD}
    )
    clock.advance(20)
    response = APIClient().post(
        f"{MFA}verify",
        {"mfa_token": pending.json()["mfa_token"], "code": code_at(device, clock.now)},
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert body["mfa_required"] is False
    claims = tokens.decode(body["access"], expected_typ=tokens.ACCESS, now=clock.now)
    assert claims.amr == ("pwd", "otp", "mfa")
    assert claims.auth_time == int(clock.now.timestamp())
    assert tokens.decode(body["refresh"], expected_typ=tokens.REFRESH, now=clock.now).mfa
    assert call(TherapistOnlyView, body["access"]).status_code == 200
    assert "auth.mfa.verified" in AuditEvent.objects.values_list("action", flat=True)


def test_the_second_step_with_a_wrong_code_is_401_and_leaves_its_audit_row(clock):
    user = make_user(role=Role.THERAPIST)
    device = enrol(user)
    bad = wrong_code(device, T0)
    response = APIClient().post(
        f"{MFA}verify", {"mfa_token": mfa_challenge_issue(user=user, now=T0), "code": bad}
    )
    assert_problem(response, 401, "mfa_code_invalid")
    assert not TokenFamily.objects.filter(user=user).exists()
    event = AuditEvent.objects.get(action="auth.mfa.failed")
    assert (event.actor_id, event.outcome, event.source_ip) == (user.pk, "denied", "127.0.0.1")
    assert bad not in str(event.details)


def test_mfa_05_a_guess_inside_the_back_off_gets_429_with_retry_after(clock):
    """MFA-05: a guess inside the back-off is 429 with ``Retry-After``, even a right one."""
    user = make_user(role=Role.THERAPIST)
    device = enrol(user)
    client = APIClient()
    challenge = mfa_challenge_issue(user=user, now=T0)
    client.post(f"{MFA}verify", {"mfa_token": challenge, "code": wrong_code(device, T0)})
    clock.advance(0.5)
    response = client.post(f"{MFA}verify", {"mfa_token": challenge, "code": code_at(device, T0)})
    assert_problem(response, 429, "mfa_throttled")
    assert response["Retry-After"] == "1"
    assert not TokenFamily.objects.filter(user=user).exists()
    clock.advance(0.5)
    response = client.post(f"{MFA}verify", {"mfa_token": challenge, "code": code_at(device, T0)})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "code",
    [
        "12345",
        "1234567",
        "abcdef",
        "12 3456",
        "１２３４５６",
        "",
        "   ",
        "1" * 10_000,
        None,
        True,
        [123456],
        {"code": "123456"},
    ],
)
def test_mfa_06_malformed_codes_get_400_and_change_nothing(clock, code):
    """MFA-06: malformed codes over HTTP are a 400 problem (never a 500) and change nothing."""
    user = make_user(role=Role.THERAPIST)
    enrol(user)
    before = (device_state(user), AuditEvent.objects.count())
    response = APIClient().post(
        f"{MFA}verify",
        {"mfa_token": mfa_challenge_issue(user=user, now=T0), "code": code},
        format="json",
    )
    assert_problem(response, 400, "validation_error")
    assert {e["field"] for e in response.json()["errors"]} == {"code"}
    assert (device_state(user), AuditEvent.objects.count()) == before
    assert not TokenFamily.objects.filter(user=user).exists()


def test_mfa_06_a_nul_byte_in_the_code_is_refused_by_the_parser(clock):
    """MFA-06: a NUL byte in the code is refused at the door."""
    user = make_user(role=Role.THERAPIST)
    device = enrol(user)
    before = device_state(user)
    response = APIClient().post(
        f"{MFA}verify",
        {"mfa_token": mfa_challenge_issue(user=user, now=T0), "code": "12345\x00"},
        format="json",
    )
    assert_problem(response, 400, "invalid_json")
    assert device_state(user) == before
    assert device.pk == before[0][0]


def test_mfa_06_surrounding_whitespace_around_a_valid_code_is_ignored(clock):
    """MFA-06: whitespace around a valid code is ignored."""
    user = make_user(role=Role.THERAPIST)
    device = enrol(user)
    response = APIClient().post(
        f"{MFA}verify",
        {"mfa_token": mfa_challenge_issue(user=user, now=T0), "code": f" {code_at(device, T0)}\t"},
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"code": "123456"},
        {"mfa_token": "x", "code": "123456", "remember_me": True},
        {"mfa_token": "x" * 5000, "code": "123456"},
    ],
)
def test_the_second_step_refuses_missing_unknown_and_oversized_fields(clock, body):
    response = APIClient().post(f"{MFA}verify", body, format="json")
    assert_problem(response, 400, "validation_error")


def test_a_bearer_header_on_the_second_step_is_ignored_not_trusted(clock):
    user = make_user(role=Role.THERAPIST)
    device = enrol(user)
    client, _ = signed_in(user, mfa=True)
    response = client.post(f"{MFA}verify", {"mfa_token": "not-a-token", "code": "123456"})
    assert_problem(response, 401, "invalid_token")
    device.refresh_from_db()
    assert device.throttling_failure_count == 0


@override_settings(RATE_LIMIT_MFA_PER_IP_PER_MINUTE=3)
def test_the_mfa_endpoints_are_limited_per_ip(clock):
    user = make_user(role=Role.THERAPIST)
    device = enrol(user)
    challenge = mfa_challenge_issue(user=user, now=T0)
    client = APIClient()
    for _ in range(3):
        clock.advance(10)
        client.post(f"{MFA}verify", {"mfa_token": challenge, "code": wrong_code(device, T0)})
    response = client.post(
        f"{MFA}verify", {"mfa_token": challenge, "code": code_at(device, clock.now)}
    )
    assert_problem(response, 429, "rate_limited")
    assert int(response["Retry-After"]) >= 1
    assert not TokenFamily.objects.filter(user=user).exists()


# --- MFA-11: staff need the second factor -----------------------------------------------------


@pytest.mark.parametrize("role", [Role.THERAPIST, Role.COMPLIANCE_OFFICER, Role.ADMIN])
def test_mfa_11_staff_with_a_password_only_token_get_403_mfa_required(clock, role):
    user = make_user(role=role)
    password_only = session_start(user=user, amr=["pwd"], now=T0).access
    response = call(ProtectedView, password_only)
    assert response.status_code == 403
    assert response.data["code"] == "mfa_required"
    with_mfa = session_start(user=user, amr=["pwd", "otp", "mfa"], now=T0).access
    assert call(ProtectedView, with_mfa).status_code == 200


def test_mfa_11_the_role_check_also_needs_the_second_factor(clock):
    therapist = make_user(role=Role.THERAPIST)
    assert call(TherapistOnlyView, signed_in(therapist)[1].access).status_code == 403
    assert call(TherapistOnlyView, signed_in(therapist, mfa=True)[1].access).status_code == 200


def test_mfa_11_a_password_only_client_reaches_protected_data_and_staff_reach_account_pages(clock):
    client_user = make_user(role=Role.CLIENT)
    assert call(ProtectedView, signed_in(client_user)[1].access).status_code == 200
    therapist = make_user(role=Role.THERAPIST)
    response = signed_in(therapist)[0].get(MFA)
    assert response.status_code == 200
    assert response.json() == {
        "enrolled": False,
        "required_by_role": True,
        "confirmed_at": None,
        "backup_codes_remaining": 0,
    }


# --- Enrolment over HTTP ----------------------------------------------------------------------


def test_mfa_09_a_staff_member_enrols_and_then_needs_the_second_factor(clock):
    """MFA-09: the device counts only once confirmed with a code; MFA-08: URI shown here."""
    user = make_user(role=Role.THERAPIST)
    client, session = signed_in(user)
    _, other = signed_in(user)

    begun = client.post(f"{MFA}totp", {"password": DEFAULT_PASSWORD})
    assert begun.status_code == 200, begun.content
    secret = begun.json()["secret"]
    assert begun.json()["otpauth_uri"].startswith("otpauth://totp/Telehealth%3A")
    assert f"secret={secret}&" in begun.json()["otpauth_uri"]
    assert client.get(MFA).json()["enrolled"] is False  # pending until confirmed

    clock.advance(15)
    confirmed = client.post(f"{MFA}totp/confirm", {"code": code_for_secret(secret, clock.now)})
    assert confirmed.status_code == 200, confirmed.content
    codes = confirmed.json()["backup_codes"]
    assert len(codes) == 10

    user.refresh_from_db()
    assert user.mfa_enabled
    assert live_families(user) == {session.family_id}  # the other sign-in ended
    assert TokenFamily.objects.get(pk=other.family_id).revoked_reason == "mfa_changed"
    status = client.get(MFA).json()
    assert status["enrolled"] is True
    assert status["backup_codes_remaining"] == 10
    assert status["confirmed_at"] == "2026-03-02T09:00:25Z"
    # this session is still password-only: protected data needs a sign-in with the code
    assert call(ProtectedView, session.access).status_code == 403


def test_mfa_08_the_secret_is_shown_at_enrolment_only(clock):
    """MFA-08: the secret is shown at enrolment only: not by the status, not in the trail."""
    user = make_user(role=Role.CLIENT)
    client, _ = signed_in(user)
    first = client.post(f"{MFA}totp", {"password": DEFAULT_PASSWORD}).json()["secret"]
    status = client.get(MFA).json()
    assert first not in str(status)
    assert set(status) == {"enrolled", "required_by_role", "confirmed_at", "backup_codes_remaining"}
    # asking again starts over with a new secret: the first is never shown again nor valid
    second = client.post(f"{MFA}totp", {"password": DEFAULT_PASSWORD}).json()["secret"]
    assert second != first
    response = client.post(f"{MFA}totp/confirm", {"code": code_for_secret(first, T0)})
    assert_problem(response, 403, "mfa_code_invalid")
    assert TOTPDevice.objects.filter(user=user).count() == 1
    assert not any(
        first in str(details) or second in str(details)
        for details in AuditEvent.objects.values_list("details", flat=True)
    )


def test_mfa_09_enrolment_needs_a_recent_sign_in_and_the_password(clock):
    """MFA-09: enrolment over HTTP needs a fresh ``auth_time`` and the password."""
    user = make_user(role=Role.THERAPIST)
    _, old = signed_in(user, at=T0 - timedelta(seconds=601))
    # a refreshed token of that old sign-in: valid, but its auth_time is 601 s ago
    stale = bearer(session_rotate(family=TokenFamily.objects.get(pk=old.family_id), now=T0).access)
    assert_problem(
        stale.post(f"{MFA}totp", {"password": DEFAULT_PASSWORD}), 403, "reauthentication_required"
    )
    fresh, _ = signed_in(user)
    assert_problem(fresh.post(f"{MFA}totp", {"password": "guess guess"}), 403, "password_invalid")
    assert_problem(fresh.post(f"{MFA}totp", {}), 400, "validation_error")
    assert not TOTPDevice.objects.filter(user=user).exists()


def test_enrolment_endpoints_need_a_signed_in_user(clock):
    anonymous = APIClient()
    for method, path in [
        ("get", MFA),
        ("post", f"{MFA}totp"),
        ("post", f"{MFA}totp/confirm"),
        ("post", f"{MFA}backup-codes"),
        ("post", f"{MFA}disable"),
    ]:
        response = getattr(anonymous, method)(path, {}, format="json")
        assert response.status_code == 401
        assert response["Content-Type"] == "application/problem+json"


def test_backup_codes_are_regenerated_with_password_and_code(clock):
    user = make_user(role=Role.CLIENT)
    device = enrol(user)
    client, _ = signed_in(user, mfa=True)
    response = client.post(
        f"{MFA}backup-codes", {"password": DEFAULT_PASSWORD, "code": code_at(device, T0)}
    )
    assert response.status_code == 200
    assert len(response.json()["backup_codes"]) == 10
    assert client.get(MFA).json()["backup_codes_remaining"] == 10


def test_regenerating_without_a_second_factor_is_a_conflict(clock):
    user = make_user(role=Role.CLIENT)
    client, _ = signed_in(user)
    response = client.post(f"{MFA}backup-codes", {"password": DEFAULT_PASSWORD, "code": "123456"})
    assert_problem(response, 409, "mfa_not_enrolled")


# --- Disable ------------------------------------------------------------------------------------


def test_a_therapist_cannot_disable_the_second_factor(clock):
    user = make_user(role=Role.THERAPIST)
    device = enrol(user)
    client, _ = signed_in(user, mfa=True)
    before = device_state(user)
    response = client.post(
        f"{MFA}disable", {"password": DEFAULT_PASSWORD, "code": code_at(device, T0)}
    )
    assert_problem(response, 403, "mfa_required_for_role")
    assert device_state(user) == before
    user.refresh_from_db()
    assert user.mfa_enabled


def test_a_client_disables_the_second_factor(clock):
    user = make_user(role=Role.CLIENT)
    device = enrol(user)
    client, session = signed_in(user, mfa=True)
    signed_in(user, mfa=True)
    response = client.post(
        f"{MFA}disable", {"password": DEFAULT_PASSWORD, "code": code_at(device, T0)}
    )
    assert response.status_code == 204
    user.refresh_from_db()
    assert not user.mfa_enabled
    assert live_families(user) == {session.family_id}
    sign_in = APIClient().post(
        "/api/v1/auth/token", {"email": user.email, "password": DEFAULT_PASSWORD}
    )
    assert sign_in.json()["mfa_required"] is False


# --- MFA-10 -------------------------------------------------------------------------------------


def test_mfa_10_a_password_reset_does_not_remove_the_second_factor(clock):
    user = make_user(role=Role.THERAPIST)
    device = enrol(user)
    new_password = "a brand new passphrase 77"
    response = APIClient().post(
        "/api/v1/auth/password/reset/confirm",
        {
            "uid": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": default_token_generator.make_token(user),
            "new_password": new_password,
        },
    )
    assert response.status_code in (200, 204), response.content

    user.refresh_from_db()
    assert user.mfa_enabled
    assert TOTPDevice.objects.get(user=user, confirmed=True).pk == device.pk
    sign_in = APIClient().post(
        "/api/v1/auth/token", {"email": user.email, "password": new_password}
    )
    assert sign_in.status_code == 200
    assert sign_in.json()["mfa_required"] is True
    assert "access" not in sign_in.json()


def test_tokens_from_a_backup_code_sign_in_also_carry_mfa(clock):
    user = make_user(role=Role.COMPLIANCE_OFFICER)
    device = enrol(user)
    client, _ = signed_in(user, mfa=True)
    codes = client.post(
        f"{MFA}backup-codes", {"password": DEFAULT_PASSWORD, "code": code_at(device, T0)}
    ).json()["backup_codes"]
    clock.advance(STEP.total_seconds())
    response = APIClient().post(
        f"{MFA}verify",
        {"mfa_token": mfa_challenge_issue(user=user, now=clock.now), "code": codes[3]},
    )
    assert response.status_code == 200
    claims = tokens.decode(response.json()["access"], expected_typ=tokens.ACCESS, now=clock.now)
    assert claims.amr == ("pwd", "otp", "mfa")


@pytest.mark.django_db(transaction=True)
def test_mfa_05_a_refused_code_commits_its_failure_count_and_audit_row(clock):
    """MFA-05: a refused code's failure count and audit row are committed. No test transaction
    around the request here: what the refusal left is really committed."""
    user = make_user(role=Role.THERAPIST)
    device = enrol(user)
    response = APIClient().post(
        f"{MFA}verify",
        {"mfa_token": mfa_challenge_issue(user=user, now=T0), "code": wrong_code(device, T0)},
    )
    assert_problem(response, 401, "mfa_code_invalid")
    device.refresh_from_db()
    assert (device.throttling_failure_count, device.throttling_failure_timestamp) == (1, T0)
    assert AuditEvent.objects.filter(action="auth.mfa.failed", actor_id=user.pk).count() == 1
