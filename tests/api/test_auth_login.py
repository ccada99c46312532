"""``POST /api/v1/auth/token``: the password step of sign-in (api/services/auth.py).

HTTP tests use the wall clock; the back-off schedule and its expiry are tested on the service
with an injected ``now``.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.contrib.auth.hashers import Argon2PasswordHasher, make_password
from django.test import RequestFactory, override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from api import tokens
from api.errors import UnauthorizedError
from api.models import Role, TokenFamily, User
from api.services import auth
from api.services.ratelimit import RateLimited
from audit.models import AuditEvent
from tests.concurrency import run_at_once
from tests.factories import DEFAULT_PASSWORD, make_user

TOKEN = "/api/v1/auth/token"
FAST_HASHER = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _sign_in(email: str, password: str, *, ip: str = "192.0.2.1"):
    return APIClient().post(
        TOKEN, {"email": email, "password": password}, format="json", REMOTE_ADDR=ip
    )


def _request(ip: str = "192.0.2.1"):
    return RequestFactory().post(TOKEN, REMOTE_ADDR=ip)


def _without_request_specifics(body: dict) -> dict:
    return {k: v for k, v in body.items() if k != "request_id"}


def _user_state(user: User) -> tuple:
    user.refresh_from_db()
    return (user.failed_login_count, user.locked_until, user.password, user.last_login)


# --- success ------------------------------------------------------------------------------------


def test_client_signs_in_with_password_and_gets_tokens(client_user):
    response = _sign_in(client_user.email, DEFAULT_PASSWORD)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "mfa_required",
        "access",
        "refresh",
        "token_type",
        "expires_in",
        "mfa_enrolment_required",
    }
    assert body["mfa_required"] is False
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert body["mfa_enrolment_required"] is False
    now = timezone.now()
    access = tokens.decode(body["access"], expected_typ=tokens.ACCESS, now=now)
    refresh = tokens.decode(body["refresh"], expected_typ=tokens.REFRESH, now=now)
    assert access.sub == refresh.sub == str(client_user.pk)
    assert access.amr == ("pwd",)
    assert access.fam == refresh.fam
    family = TokenFamily.objects.get(pk=access.fam)
    assert family.user == client_user
    assert family.amr == ["pwd"]
    assert str(family.current_jti) == refresh.jti
    assert APIClient().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {body['access']}").json()[
        "id"
    ] == str(client_user.pk)


def test_email_is_matched_case_insensitively_and_trimmed(client_user):
    assert _sign_in(f"  {client_user.email.upper()} ", DEFAULT_PASSWORD).status_code == 200


def test_staff_without_mfa_get_password_only_tokens_and_must_enrol(therapist):
    response = _sign_in(therapist.email, DEFAULT_PASSWORD)
    assert response.status_code == 200
    body = response.json()
    assert body["mfa_enrolment_required"] is True
    claims = tokens.decode(body["access"], expected_typ=tokens.ACCESS, now=timezone.now())
    assert claims.amr == ("pwd",)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access']}")
    assert api.get("/api/v1/me").status_code == 200
    refused = api.post(
        "/api/v1/me/password",
        {"current_password": DEFAULT_PASSWORD, "new_password": "a brand new passphrase"},
        format="json",
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "mfa_required"
    assert api.post("/api/v1/auth/logout").status_code == 204


def test_mfa_01_enrolled_user_gets_only_an_mfa_pending_challenge(therapist):
    """MFA-01: the password step of an enrolled account yields an mfa_pending token only."""
    User.objects.filter(pk=therapist.pk).update(mfa_enabled=True)
    families_before = TokenFamily.objects.count()
    response = _sign_in(therapist.email, DEFAULT_PASSWORD)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"mfa_required", "mfa_token", "expires_in"}
    assert body["mfa_required"] is True
    assert body["expires_in"] == 300
    claims = tokens.decode(body["mfa_token"], expected_typ=tokens.MFA_PENDING, now=timezone.now())
    assert claims.sub == str(therapist.pk)
    assert claims.exp - claims.iat == 300
    assert TokenFamily.objects.count() == families_before  # no session yet
    me = APIClient().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {body['mfa_token']}")
    assert me.status_code == 401


def test_success_resets_the_failure_count_and_notes_the_sign_in(client_user):
    User.objects.filter(pk=client_user.pk).update(failed_login_count=3)
    assert _sign_in(client_user.email, DEFAULT_PASSWORD).status_code == 200
    client_user.refresh_from_db()
    assert client_user.failed_login_count == 0
    assert client_user.locked_until is None
    assert client_user.last_login is not None


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"email": "a@example.test"},
        {"email": "not-an-email", "password": "x"},
        {"email": "a@example.test", "password": "x", "role": "admin"},
        {"email": ["a@example.test"], "password": "x"},
        {"email": "a@example.test", "password": "x" * 1025},
    ],
    ids=["empty", "no-password", "bad-email", "unknown-field", "list", "over-max-length"],
)
def test_malformed_sign_in_is_400_and_counts_nothing(client_user, body):
    before = _user_state(client_user)
    response = APIClient().post(TOKEN, body, format="json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "validation_error"
    assert _user_state(client_user) == before
    assert not TokenFamily.objects.exists()


def test_lgn_01_unknown_email_and_wrong_password_answer_alike(client_user):
    """LGN-01: same status and body for an unknown account and a wrong password."""
    unknown = _sign_in("nobody@example.test", DEFAULT_PASSWORD)
    wrong = _sign_in(client_user.email, "not the password at all")
    assert unknown.status_code == wrong.status_code == 401
    assert unknown["Content-Type"] == wrong["Content-Type"] == "application/problem+json"
    assert _without_request_specifics(unknown.json()) == _without_request_specifics(wrong.json())
    assert unknown.json()["code"] == "invalid_credentials"
    assert not TokenFamily.objects.exists()


def test_lgn_01_inactive_account_answers_like_a_wrong_password(client_user):
    User.objects.filter(pk=client_user.pk).update(is_active=False)
    inactive = _sign_in(client_user.email, DEFAULT_PASSWORD)
    unknown = _sign_in("nobody@example.test", DEFAULT_PASSWORD)
    assert inactive.status_code == 401
    assert _without_request_specifics(inactive.json()) == _without_request_specifics(unknown.json())
    assert not TokenFamily.objects.exists()


def test_lgn_01_the_hasher_runs_once_for_unknown_and_for_known_accounts(client_user, monkeypatch):
    calls: list[str] = []
    real_encode, real_verify = Argon2PasswordHasher.encode, Argon2PasswordHasher.verify

    def encode(self, *args, **kwargs):
        calls.append("encode")
        return real_encode(self, *args, **kwargs)

    def verify(self, *args, **kwargs):
        calls.append("verify")
        return real_verify(self, *args, **kwargs)

    monkeypatch.setattr(Argon2PasswordHasher, "encode", encode)
    monkeypatch.setattr(Argon2PasswordHasher, "verify", verify)
    _sign_in("nobody@example.test", DEFAULT_PASSWORD)
    assert calls == ["encode"]
    calls.clear()
    _sign_in(client_user.email, "not the password at all")
    assert calls == ["verify"]


@override_settings(LOGIN_MAX_FAILURES_BEFORE_BACKOFF=100)  # a locked answer skips the hasher
def test_lgn_01_unknown_and_wrong_password_take_about_the_same_time(client_user):
    timings: dict[str, list[float]] = {"unknown": [], "wrong": []}
    for i in range(5):  # interleaved, so background load weighs on both alike
        for kind, email in (("unknown", "nobody@example.test"), ("wrong", client_user.email)):
            start = time.perf_counter()
            _sign_in(email, "not the password at all", ip=f"192.0.2.{i + 10}")
            timings[kind].append(time.perf_counter() - start)
    unknown, wrong = min(timings["unknown"]), min(timings["wrong"])
    # Both spend one Argon2 computation; without it the unknown path is ~100x faster.
    assert 1 / 3 < unknown / wrong < 3, (unknown, wrong)


# --- LGN-02: per-account back-off and per-IP limits ----------------------------------------


@override_settings(LOGIN_MAX_FAILURES_BEFORE_BACKOFF=3, PASSWORD_HASHERS=FAST_HASHER)
def test_lgn_02_one_account_from_many_ips_is_backed_off_even_for_the_right_password(db):
    user = make_user()
    for i in range(2):
        assert _sign_in(user.email, "wrong guess", ip=f"198.51.100.{i}").status_code == 401
    # Already well past the threshold, so the next lock is long enough to observe over HTTP.
    User.objects.filter(pk=user.pk).update(failed_login_count=5)
    assert _sign_in(user.email, "wrong guess", ip="198.51.100.2").status_code == 401
    user.refresh_from_db()
    assert user.failed_login_count == 6
    locked = _sign_in(user.email, DEFAULT_PASSWORD, ip="203.0.113.50")
    assert locked.status_code == 429
    assert locked["Content-Type"] == "application/problem+json"
    assert locked.json()["code"] == "too_many_failures"
    assert 1 <= int(locked["Retry-After"]) <= 8  # 2 ** (6 - 3) seconds from the last failure
    assert locked.json()["retry_after"] == int(locked["Retry-After"])
    user.refresh_from_db()
    assert user.failed_login_count == 6  # attempts during the lock are not counted
    assert not TokenFamily.objects.exists()


@override_settings(
    LOGIN_MAX_FAILURES_BEFORE_BACKOFF=3, LOGIN_BACKOFF_MAX_SECONDS=8, PASSWORD_HASHERS=FAST_HASHER
)
def test_lgn_02_back_off_doubles_is_capped_and_ends_by_itself(db):
    user = make_user()
    now = timezone.now()
    locks = []
    for _ in range(7):
        with pytest.raises(UnauthorizedError):
            auth.login_attempt(email=user.email, password="wrong", request=_request(), now=now)
        user.refresh_from_db()
        lock = int((user.locked_until - now).total_seconds()) if user.locked_until else 0
        locks.append(lock)
        # During the lock even the right password is refused, with the time left.
        if lock:
            with pytest.raises(auth.AccountLocked) as refused:
                auth.login_attempt(
                    email=user.email, password=DEFAULT_PASSWORD, request=_request(), now=now
                )
            assert refused.value.retry_after == lock
        now += timedelta(seconds=lock)  # the lock ends by itself
    assert locks == [0, 0, 1, 2, 4, 8, 8]
    result = auth.login_attempt(
        email=user.email, password=DEFAULT_PASSWORD, request=_request(), now=now
    )
    assert isinstance(result, auth.SignedIn)
    user.refresh_from_db()
    assert (user.failed_login_count, user.locked_until) == (0, None)


def test_lgn_02_backoff_schedule_with_default_settings():
    assert [auth.backoff_seconds(n) for n in range(1, 8)] == [0, 0, 0, 0, 1, 2, 4]
    assert auth.backoff_seconds(15) == 900  # 1024 s capped at LOGIN_BACKOFF_MAX_SECONDS
    assert auth.backoff_seconds(10_000) == 900


@override_settings(LOGIN_MAX_FAILURES_BEFORE_BACKOFF=3, PASSWORD_HASHERS=FAST_HASHER)
def test_lgn_02_unknown_address_is_backed_off_alike_so_lockout_is_no_oracle(db):
    user = make_user()
    start = timezone.now()

    def outcomes(email: str) -> list[tuple[str, int]]:
        seen = []
        for seconds in (0, 0, 0, 0, 1, 1, 3):
            try:
                auth.login_attempt(
                    email=email,
                    password="wrong guess",
                    request=_request(),
                    now=start + timedelta(seconds=seconds),
                )
            except (UnauthorizedError, auth.AccountLocked) as exc:
                seen.append((exc.code, int(getattr(exc, "retry_after", 0))))
        return seen

    known, unknown = outcomes(user.email), outcomes("nobody@example.test")
    assert known == unknown
    assert known == [
        ("invalid_credentials", 0),
        ("invalid_credentials", 0),
        ("invalid_credentials", 0),  # the third failure starts a 1 s lock
        ("too_many_failures", 1),
        ("invalid_credentials", 0),  # the lock ended; this failure starts 2 s
        ("too_many_failures", 2),
        ("invalid_credentials", 0),
    ]


@override_settings(RATE_LIMIT_LOGIN_PER_IP_PER_MINUTE=3, PASSWORD_HASHERS=FAST_HASHER)
def test_lgn_02_many_accounts_from_one_ip_hit_the_per_ip_limit(db):
    accounts = [make_user() for _ in range(4)]
    for user in accounts[:3]:
        assert _sign_in(user.email, "wrong", ip="198.51.100.9").status_code == 401
    limited = _sign_in(accounts[3].email, DEFAULT_PASSWORD, ip="198.51.100.9")
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limited"
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert not TokenFamily.objects.exists()
    # Another address is not affected, and no account was locked by the flood.
    assert _sign_in(accounts[3].email, DEFAULT_PASSWORD, ip="198.51.100.10").status_code == 200
    assert all(u.locked_until is None for u in User.objects.filter(pk__in=[a.pk for a in accounts]))


@override_settings(RATE_LIMIT_LOGIN_PER_IP_PER_MINUTE=2, PASSWORD_HASHERS=FAST_HASHER)
def test_lgn_02_the_per_ip_limit_ends_with_its_window(db):
    user = make_user()
    now = timezone.now().replace(second=0, microsecond=0)
    for _ in range(2):
        auth.login_attempt(email=user.email, password=DEFAULT_PASSWORD, request=_request(), now=now)
    with pytest.raises(RateLimited):
        auth.login_attempt(email=user.email, password=DEFAULT_PASSWORD, request=_request(), now=now)
    result = auth.login_attempt(
        email=user.email,
        password=DEFAULT_PASSWORD,
        request=_request(),
        now=now + timedelta(minutes=1),
    )
    assert isinstance(result, auth.SignedIn)


# --- LGN-03: failures counted under concurrency ---------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@override_settings(LOGIN_MAX_FAILURES_BEFORE_BACKOFF=1000, PASSWORD_HASHERS=FAST_HASHER)
def test_lgn_03_parallel_failures_are_each_counted():
    """LGN-03: 20 parallel wrong passwords leave failed_login_count == 20 (F() increments)."""
    user = make_user()
    parallel = 20

    def attempt(i: int) -> int:
        return _sign_in(user.email, "wrong guess", ip=f"198.51.100.{i}").status_code

    codes = run_at_once(attempt, parallel)
    assert codes == [401] * parallel
    user.refresh_from_db()
    assert user.failed_login_count == parallel
    failed = AuditEvent.objects.filter(action="auth.login.failed", resource_id=str(user.pk))
    assert sorted(e.details["failures"] for e in failed) == list(range(1, parallel + 1))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@override_settings(LOGIN_MAX_FAILURES_BEFORE_BACKOFF=5, PASSWORD_HASHERS=FAST_HASHER)
def test_lgn_03_parallel_failures_cannot_skip_the_lock():
    """Every failure that crosses the threshold locks the account; none slips past the count."""
    user = make_user()
    parallel = 12

    def attempt(i: int) -> int:
        return _sign_in(user.email, "wrong guess", ip=f"198.51.100.{i}").status_code

    codes = run_at_once(attempt, parallel)
    user.refresh_from_db()
    assert codes.count(401) == user.failed_login_count
    assert codes.count(401) + codes.count(429) == parallel
    assert user.failed_login_count >= 5
    assert user.locked_until is not None


# --- LGN-05: hashing ------------------------------------------------------------------------------


def test_lgn_05_passwords_are_hashed_with_argon2id(client_user):
    assert client_user.password.startswith("argon2$argon2id$")
    assert DEFAULT_PASSWORD not in client_user.password


def test_lgn_05_an_older_pbkdf2_hash_is_upgraded_at_sign_in(client_user):
    legacy = make_password(DEFAULT_PASSWORD, hasher="pbkdf2_sha256")
    User.objects.filter(pk=client_user.pk).update(password=legacy)
    assert _sign_in(client_user.email, DEFAULT_PASSWORD).status_code == 200
    client_user.refresh_from_db()
    assert client_user.password.startswith("argon2$argon2id$")
    assert client_user.check_password(DEFAULT_PASSWORD)


def test_lgn_05_weaker_argon2_parameters_are_upgraded_at_sign_in(client_user):
    class WeakArgon2(Argon2PasswordHasher):
        time_cost = 1
        memory_cost = 8192

    weak = WeakArgon2().encode(DEFAULT_PASSWORD, WeakArgon2().salt())
    User.objects.filter(pk=client_user.pk).update(password=weak)
    assert _sign_in(client_user.email, DEFAULT_PASSWORD).status_code == 200
    client_user.refresh_from_db()
    assert client_user.password != weak
    assert "m=102400,t=2,p=8" in client_user.password


def test_lgn_05_a_wrong_password_does_not_upgrade_the_hash(client_user):
    legacy = make_password(DEFAULT_PASSWORD, hasher="pbkdf2_sha256")
    User.objects.filter(pk=client_user.pk).update(password=legacy)
    assert _sign_in(client_user.email, "not the password").status_code == 401
    client_user.refresh_from_db()
    assert client_user.password == legacy


# --- LGN-06: audit ------------------------------------------------------------------------------


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("pk"))


def test_lgn_06_success_is_audited_with_the_actor(client_user):
    response = _sign_in(client_user.email, DEFAULT_PASSWORD, ip="192.0.2.44")
    [event] = _events("auth.login.succeeded")
    family_id = tokens.decode(
        response.json()["access"], expected_typ=tokens.ACCESS, now=timezone.now()
    ).fam
    assert event.actor_id == client_user.pk
    assert event.actor_role == "client"
    assert event.outcome == "allowed"
    assert event.source_ip == "192.0.2.44"
    assert (event.resource_type, event.resource_id) == ("user", str(client_user.pk))
    assert event.details == {"family_id": family_id, "amr": ["pwd"]}


def test_lgn_06_mfa_challenge_is_audited(therapist):
    User.objects.filter(pk=therapist.pk).update(mfa_enabled=True)
    _sign_in(therapist.email, DEFAULT_PASSWORD)
    [event] = _events("auth.login.mfa_challenged")
    assert event.actor_id == therapist.pk
    assert not _events("auth.login.succeeded")


def test_lgn_06_failures_are_audited_without_the_actor_or_secrets(client_user):
    _sign_in(client_user.email, "wrong guess 1")
    _sign_in("nobody@example.test", "wrong guess 2")
    known, unknown = _events("auth.login.failed")
    assert known.outcome == unknown.outcome == "denied"
    assert known.actor_id is None and known.actor_label == "anonymous"
    assert (known.resource_type, known.resource_id) == ("user", str(client_user.pk))
    assert known.details == {"reason": "wrong_password", "failures": 1}
    assert unknown.resource_id == ""
    assert unknown.details == {"reason": "unknown_account", "failures": 1}
    dump = str(list(AuditEvent.objects.values()))
    for secret in ("wrong guess 1", "wrong guess 2", client_user.email, "nobody@example.test"):
        assert secret not in dump


@override_settings(LOGIN_MAX_FAILURES_BEFORE_BACKOFF=2, PASSWORD_HASHERS=FAST_HASHER)
def test_lgn_06_lockout_and_locked_attempts_are_audited(db):
    user = make_user()
    now = timezone.now()
    for password in ("wrong", "wrong", DEFAULT_PASSWORD):
        with pytest.raises((UnauthorizedError, auth.AccountLocked)):
            auth.login_attempt(email=user.email, password=password, request=_request(), now=now)
    [lockout] = _events("auth.lockout")
    assert lockout.outcome == "denied"
    assert lockout.resource_id == str(user.pk)
    assert lockout.details == {"failures": 2, "lock_seconds": 1}
    [locked] = _events("auth.login.locked_out")
    assert locked.outcome == "denied"
    assert locked.resource_id == str(user.pk)
    assert locked.details == {"retry_after": 1}


@pytest.mark.django_db(transaction=True)
def test_lgn_06_a_failed_sign_in_event_is_committed_although_the_request_fails():
    with override_settings(PASSWORD_HASHERS=FAST_HASHER):
        user = make_user()
        assert _sign_in(user.email, "wrong").status_code == 401
    # (The audit trail is append-only, so rows of earlier transactional tests remain: filter.)
    events = AuditEvent.objects.filter(action="auth.login.failed", resource_id=str(user.pk))
    assert events.count() == 1
    user.refresh_from_db()
    assert user.failed_login_count == 1


def test_lgn_06_the_per_ip_limit_is_audited_once_per_window(client_user):
    with override_settings(RATE_LIMIT_LOGIN_PER_IP_PER_MINUTE=1):
        for _ in range(4):
            _sign_in(client_user.email, "wrong", ip="198.51.100.77")
    [event] = _events("auth.rate_limited")
    assert event.source_ip == "198.51.100.77"
    assert event.details["scope"] == "login"


def test_a_staff_role_is_read_from_the_account_not_the_request(db):
    admin = make_user(role=Role.ADMIN)
    body = _sign_in(admin.email, DEFAULT_PASSWORD).json()
    claims = tokens.decode(body["access"], expected_typ=tokens.ACCESS, now=timezone.now())
    assert claims.role == "admin"
    assert body["mfa_enrolment_required"] is True
