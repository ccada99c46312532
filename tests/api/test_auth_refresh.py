"""``POST /api/v1/auth/token/refresh``: rotation, reuse detection and family lifetimes.

Service tests inject ``now``; HTTP tests mint their tokens with ``session_start(now=...)``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import RequestFactory, override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from api import tokens
from api.errors import UnauthorizedError
from api.models import TokenFamily, User
from api.services import auth
from api.services.sessions import mfa_challenge_issue, session_start
from api.services.users import user_deactivate
from audit.models import AuditEvent
from tests.concurrency import run_at_once
from tests.factories import make_user

REFRESH = "/api/v1/auth/token/refresh"
FAST_HASHER = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    """Nothing here is about password hashing: spare each persona the Argon2 cost."""
    settings.PASSWORD_HASHERS = FAST_HASHER


def _refresh(token, **extra):
    return APIClient().post(REFRESH, {"refresh": token}, format="json", **extra)


def _me(access: str) -> int:
    return APIClient().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {access}").status_code


def _family_row(family_id) -> dict:
    return TokenFamily.objects.filter(pk=family_id).values().get()


def _request():
    return RequestFactory().post(REFRESH, REMOTE_ADDR="192.0.2.1")


def _assert_refused(response) -> None:
    assert response.status_code == 401, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "invalid_token"


# --- rotation -------------------------------------------------------------------------------------


def test_refresh_returns_a_new_pair_of_the_same_family(client_user):
    start = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    response = _refresh(start.refresh)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["mfa_required"] is False
    assert body["refresh"] != start.refresh
    assert body["access"] != start.access
    now = timezone.now()
    access = tokens.decode(body["access"], expected_typ=tokens.ACCESS, now=now)
    refresh = tokens.decode(body["refresh"], expected_typ=tokens.REFRESH, now=now)
    family = TokenFamily.objects.get(pk=start.family_id)
    assert access.fam == refresh.fam == str(start.family_id)
    assert family.generation == 1
    assert str(family.current_jti) == refresh.jti
    assert family.revoked_at is None
    assert _me(body["access"]) == 200


def test_refresh_keeps_the_sign_in_time_and_factors(therapist):
    signed_in = timezone.now() - timedelta(minutes=10)
    start = session_start(user=therapist, amr=["pwd", "otp", "mfa"], now=signed_in)
    result = auth.session_refresh(
        refresh_token=start.refresh, request=_request(), now=signed_in + timedelta(minutes=10)
    )
    claims = tokens.decode(
        result.tokens.access, expected_typ=tokens.ACCESS, now=signed_in + timedelta(minutes=10)
    )
    assert claims.amr == ("pwd", "otp", "mfa")
    assert claims.auth_time == int(signed_in.timestamp())


def test_refresh_takes_the_role_from_the_account(client_user):
    start = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    User.objects.filter(pk=client_user.pk).update(role="therapist")
    body = _refresh(start.refresh).json()
    claims = tokens.decode(body["access"], expected_typ=tokens.ACCESS, now=timezone.now())
    assert claims.role == "therapist"
    assert body["mfa_enrolment_required"] is True


@pytest.mark.parametrize(
    "body",
    [{}, {"refresh": ""}, {"refresh": ["x"]}, {"refresh": "x", "access": "y"}],
    ids=["empty", "blank", "list", "unknown-field"],
)
def test_malformed_refresh_request_is_400(db, body):
    response = APIClient().post(REFRESH, body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


# --- JWT-07: only refresh tokens ------------------------------------------------------------------


def test_jwt_07_access_token_sent_to_refresh_is_refused(client_user):
    start = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    before = _family_row(start.family_id)
    _assert_refused(_refresh(start.access))
    assert _family_row(start.family_id) == before


def test_jwt_07_mfa_pending_token_sent_to_refresh_is_refused(therapist):
    _assert_refused(_refresh(mfa_challenge_issue(user=therapist, now=timezone.now())))
    assert not TokenFamily.objects.exists()


@pytest.mark.parametrize("garbage", ["x", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "A" * 10_240])
def test_jwt_03_garbage_sent_to_refresh_is_refused(db, garbage):
    _assert_refused(_refresh(garbage))


# --- JWT-09: reuse revokes the family -------------------------------------------------------------


def test_jwt_09_an_exchanged_refresh_token_is_single_use(client_user):
    start = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    assert _refresh(start.refresh).status_code == 200
    _assert_refused(_refresh(start.refresh))


def test_jwt_09_reuse_after_the_victim_refreshed_ends_the_whole_family(client_user):
    """The attacker replays a stolen, already-exchanged token: every descendant dies."""
    start = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    victim_1 = _refresh(start.refresh).json()
    victim_2 = _refresh(victim_1["refresh"]).json()
    assert _me(victim_2["access"]) == 200

    _assert_refused(_refresh(start.refresh))  # the attacker's replay

    family = TokenFamily.objects.get(pk=start.family_id)
    assert family.revoked_at is not None
    assert family.revoked_reason == "reuse"
    _assert_refused(_refresh(victim_2["refresh"]))
    assert _me(victim_2["access"]) == 401
    assert _me(victim_1["access"]) == 401
    assert _me(start.access) == 401


def test_jwt_09_reuse_by_the_victim_also_ends_the_attackers_tokens(client_user):
    """The attacker exchanged the stolen token first; the victim's next refresh is the reuse."""
    start = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    attacker = _refresh(start.refresh).json()
    assert _me(attacker["access"]) == 200

    _assert_refused(_refresh(start.refresh))  # the victim, unaware

    _assert_refused(_refresh(attacker["refresh"]))
    assert _me(attacker["access"]) == 401
    assert TokenFamily.objects.get(pk=start.family_id).revoked_reason == "reuse"


def test_jwt_09_reuse_leaves_the_users_other_sessions_alone(client_user):
    start = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    other = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    _refresh(start.refresh)
    _refresh(start.refresh)
    assert TokenFamily.objects.get(pk=other.family_id).revoked_at is None
    assert _refresh(other.refresh).status_code == 200


def test_jwt_09_reuse_is_audited(client_user):
    start = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    _refresh(start.refresh, REMOTE_ADDR="203.0.113.9")
    _refresh(start.refresh, REMOTE_ADDR="203.0.113.9")
    [event] = AuditEvent.objects.filter(action="auth.token.reuse_detected")
    assert event.outcome == "denied"
    assert event.source_ip == "203.0.113.9"
    assert (event.resource_type, event.resource_id) == ("user", str(client_user.pk))
    assert event.details == {"family_id": str(start.family_id), "reason": "reuse"}


def test_a_revoked_family_cannot_refresh_and_the_refusal_changes_nothing(client_user):
    start = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    TokenFamily.objects.filter(pk=start.family_id).update(
        revoked_at=timezone.now(), revoked_reason="logout"
    )
    before = _family_row(start.family_id)
    _assert_refused(_refresh(start.refresh))
    assert _family_row(start.family_id) == before
    [event] = AuditEvent.objects.filter(action="auth.token.refresh_denied")
    assert event.details["reason"] == "revoked"


def test_a_refresh_token_naming_another_users_family_is_refused(client_user, outsider):
    theirs = session_start(user=outsider, amr=["pwd"], now=timezone.now())
    now = timezone.now()
    forged = tokens.mint(
        typ=tokens.REFRESH,
        sub=str(client_user.pk),
        role="client",
        now=now,
        ttl_seconds=600,
        auth_time=now,
        amr=["pwd"],
        family_id=theirs.family_id,
        jti=TokenFamily.objects.get(pk=theirs.family_id).current_jti,
    )
    before = _family_row(theirs.family_id)
    _assert_refused(_refresh(forged))
    assert _family_row(theirs.family_id) == before


# --- JWT-10: parallel refreshes -------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("parallel", [2, 8, 20])
def test_jwt_10_parallel_refreshes_of_one_token_give_exactly_one_success(parallel):
    """JWT-10: the family row lock lets one exchange win; the others are reuse (fail safe)."""
    with override_settings(PASSWORD_HASHERS=FAST_HASHER):
        user = make_user()
    start = session_start(user=user, amr=["pwd"], now=timezone.now())
    codes = run_at_once(lambda _: _refresh(start.refresh).status_code, parallel)
    assert sorted(codes) == [200] + [401] * (parallel - 1)
    family = TokenFamily.objects.get(pk=start.family_id)
    assert family.generation == 1  # rotated exactly once
    assert family.revoked_reason == "reuse"
    # (The audit trail is append-only, so rows of earlier transactional tests remain: filter.)
    events = AuditEvent.objects.filter(resource_id=str(user.pk))
    assert events.filter(action="auth.token.refreshed").count() == 1
    # The first loser detects the reuse and revokes; later ones find the family revoked.
    assert events.filter(action="auth.token.reuse_detected").count() == 1
    denied = events.filter(action="auth.token.refresh_denied")
    assert [e.details["reason"] for e in denied] == ["revoked"] * (parallel - 2)


# --- JWT-12: deactivated or deleted users ---------------------------------------------------------


def test_jwt_12_deactivated_user_can_neither_refresh_nor_use_an_access_token(
    client_user, admin_user
):
    start = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    other = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    assert _me(start.access) == 200
    revoked = user_deactivate(user=client_user, by=admin_user, now=timezone.now())
    assert revoked == 2
    assert _me(start.access) == 401  # at once, not when the token expires
    _assert_refused(_refresh(start.refresh))
    _assert_refused(_refresh(other.refresh))
    assert set(TokenFamily.objects.values_list("revoked_reason", flat=True)) == {"deactivated"}
    client_user.refresh_from_db()
    assert client_user.is_active is False
    [event] = AuditEvent.objects.filter(action="account.deactivated")
    assert event.actor_id == admin_user.pk
    assert event.resource_id == str(client_user.pk)
    assert event.details == {"families_revoked": 2}


def test_jwt_12_user_made_inactive_without_the_service_cannot_refresh(client_user):
    start = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    User.objects.filter(pk=client_user.pk).update(is_active=False)
    _assert_refused(_refresh(start.refresh))
    family = TokenFamily.objects.get(pk=start.family_id)
    assert family.revoked_reason == "deactivated"


def test_jwt_12_deleted_user_cannot_refresh(client_user):
    start = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    client_user.delete()
    _assert_refused(_refresh(start.refresh))


def test_jwt_12_deactivated_user_cannot_sign_in(client_user):
    from tests.factories import DEFAULT_PASSWORD

    user_deactivate(user=client_user, by=None, now=timezone.now())
    response = APIClient().post(
        "/api/v1/auth/token",
        {"email": client_user.email, "password": DEFAULT_PASSWORD},
        format="json",
    )
    assert response.status_code == 401
    [event] = AuditEvent.objects.filter(action="account.deactivated")
    assert event.actor_id is None and event.actor_label == "system"


# --- JWT-13: idle timeout and absolute lifetime ---------------------------------------------------


def test_jwt_13_refresh_token_unused_for_the_idle_timeout_is_refused(client_user):
    t0 = timezone.now()
    start = session_start(user=client_user, amr=["pwd"], now=t0)
    idle = timedelta(seconds=1800)
    ok = auth.session_refresh(
        refresh_token=start.refresh, request=_request(), now=t0 + idle - timedelta(seconds=1)
    )
    with pytest.raises(UnauthorizedError):
        auth.session_refresh(
            refresh_token=ok.tokens.refresh,
            request=_request(),
            now=t0 + idle - timedelta(seconds=1) + idle,
        )
    family = TokenFamily.objects.get(pk=start.family_id)
    assert family.generation == 1


def test_jwt_13_family_idle_since_its_last_refresh_is_revoked(client_user):
    """Also enforced on the family row (if the refresh TTL is raised, old families still idle)."""
    t0 = timezone.now()
    start = session_start(user=client_user, amr=["pwd"], now=t0)
    with override_settings(JWT_REFRESH_TTL_SECONDS=600):
        with pytest.raises(UnauthorizedError):
            auth.session_refresh(
                refresh_token=start.refresh, request=_request(), now=t0 + timedelta(seconds=600)
            )
    family = TokenFamily.objects.get(pk=start.family_id)
    assert (family.revoked_reason, family.generation) == ("expired", 0)
    assert AuditEvent.objects.get(action="auth.token.refresh_denied").details["reason"] == (
        "idle_timeout"
    )


def test_jwt_13_family_ends_at_its_absolute_lifetime_however_active(client_user):
    t0 = timezone.now()
    start = session_start(user=client_user, amr=["pwd"], now=t0)
    refresh, now = start.refresh, t0
    step = timedelta(minutes=20)
    max_age = timedelta(hours=12)
    while now + step < t0 + max_age:
        now += step
        refresh = auth.session_refresh(
            refresh_token=refresh, request=_request(), now=now
        ).tokens.refresh
    assert TokenFamily.objects.get(pk=start.family_id).generation == 35
    with pytest.raises(UnauthorizedError):
        auth.session_refresh(refresh_token=refresh, request=_request(), now=t0 + max_age)
    family = TokenFamily.objects.get(pk=start.family_id)
    assert (family.revoked_reason, family.generation) == ("expired", 35)
    assert AuditEvent.objects.get(action="auth.token.refresh_denied").details["reason"] == "max_age"


def test_jwt_13_absolute_lifetime_over_http(client_user):
    start = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    TokenFamily.objects.filter(pk=start.family_id).update(
        created_at=timezone.now() - timedelta(hours=12, seconds=1)
    )
    _assert_refused(_refresh(start.refresh))
    assert TokenFamily.objects.get(pk=start.family_id).revoked_reason == "expired"
    assert _me(start.access) == 401


# --- limits and audit -----------------------------------------------------------------------------


@override_settings(RATE_LIMIT_REFRESH_PER_IP_PER_MINUTE=2)
def test_refresh_is_limited_per_ip(client_user):
    start = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    first = _refresh(start.refresh, REMOTE_ADDR="198.51.100.1").json()
    _refresh("garbage", REMOTE_ADDR="198.51.100.1")
    limited = _refresh(first["refresh"], REMOTE_ADDR="198.51.100.1")
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limited"
    assert "Retry-After" in limited
    assert TokenFamily.objects.get(pk=start.family_id).generation == 1  # nothing exchanged
    assert _refresh(first["refresh"], REMOTE_ADDR="198.51.100.2").status_code == 200


def test_lgn_06_refresh_is_audited(client_user):
    start = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    _refresh(start.refresh)
    [event] = AuditEvent.objects.filter(action="auth.token.refreshed")
    assert event.actor_id == client_user.pk
    assert event.outcome == "allowed"
    assert event.details == {"family_id": str(start.family_id), "generation": 1}


def test_jwt_15_refresh_tokens_are_not_echoed_or_stored_in_the_audit_trail(client_user, caplog):
    start = session_start(user=client_user, amr=["pwd"], now=timezone.now())
    with caplog.at_level("DEBUG"):
        ok = _refresh(start.refresh)
        reused = _refresh(start.refresh)
    assert start.refresh not in reused.content.decode()
    dump = str(list(AuditEvent.objects.values()))
    for token in (start.refresh, ok.json()["refresh"], ok.json()["access"]):
        assert token not in dump
        assert token not in caplog.text
