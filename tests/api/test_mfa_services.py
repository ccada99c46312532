"""The MFA services with an injected clock: codes, replay, back-off, backup codes, enrolment."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings

from api import crypto, tokens
from api.errors import ConflictError, ForbiddenError, TooManyRequestsError, UnauthorizedError
from api.models import BackupCode, Role, TokenFamily, TOTPDevice
from api.services import mfa
from api.services.sessions import mfa_challenge_issue, session_start
from audit.models import AuditEvent
from tests.api.mfa_support import (
    STEP,
    T0,
    actions,
    code_at,
    device_state,
    enrol,
    http_request,
    live_families,
    wrong_code,
)
from tests.factories import DEFAULT_PASSWORD, make_user

pytestmark = pytest.mark.django_db

FRESH = int(T0.timestamp())  # an auth_time of "just signed in"


def verify(user, code, *, now=T0):
    return mfa.mfa_verify(
        mfa_token=mfa_challenge_issue(user=user, now=now),
        code=code,
        now=now,
        request=http_request(),
    )


def backup_codes_for(user, device, *, now=T0):
    return mfa.mfa_backup_codes_regenerate(
        user=user,
        password=DEFAULT_PASSWORD,
        code=code_at(device, now),
        now=now,
        request=http_request(),
    )


# --- Codes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [-1, 0, 1])
def test_mfa_06_codes_of_the_previous_current_and_next_step_are_accepted(steps):
    """MFA-06: codes of the previous, current and next 30 s step are accepted."""
    user = make_user(role=Role.CLIENT)
    device = enrol(user)
    pair = verify(user, code_at(device, T0 + steps * STEP))
    assert tokens.decode(pair.access, expected_typ=tokens.ACCESS, now=T0).amr == (
        "pwd",
        "otp",
        "mfa",
    )


@pytest.mark.parametrize("steps", [-2, 2, -3, 3])
def test_mfa_06_codes_two_or_more_steps_away_are_rejected(steps):
    """MFA-06: codes two or more steps away are refused and sign nobody in."""
    user = make_user(role=Role.CLIENT)
    device = enrol(user)
    with pytest.raises(UnauthorizedError) as refused:
        verify(user, code_at(device, T0 + steps * STEP))
    assert refused.value.code == "mfa_code_invalid"
    assert TokenFamily.objects.filter(user=user).count() == 0


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("123456", ("totp", "123456")),
        ("  123456\n", ("totp", "123456")),
        ("abcde-fghij", ("backup_code", "abcdefghij")),
        ("ABCDEFGHIJ", ("backup_code", "abcdefghij")),
        ("12345", None),
        ("1234567", None),
        ("12a456", None),
        ("123 456", None),
        ("١٢٣٤٥٦", None),  # Arabic-Indic digits: int() would take them
        ("１２３４５６", None),  # full-width digits
        ("abcde fghij", None),
        ("abcde-fghi1", None),
        ("", None),
    ],
)
def test_mfa_06_code_shapes(raw, parsed):
    """MFA-06: letters, 5 or 7 digits, non-ASCII digits, inner spaces are no code."""
    result = mfa.mfa_code_parse(raw)
    assert (result and (result.kind.value, result.value)) == parsed


@pytest.mark.parametrize("raw", ["12345", "1234567", "abcdef", "123 456", "١٢٣٤٥٦", "\x00"])
def test_mfa_06_a_malformed_code_reaching_the_service_is_a_counted_wrong_code(raw):
    """MFA-06: a malformed code reaching the service is a counted wrong code, not a crash."""
    user = make_user(role=Role.CLIENT)
    enrol(user)
    with pytest.raises(UnauthorizedError):
        verify(user, raw)
    assert TOTPDevice.objects.get(user=user).throttling_failure_count == 1


def test_mfa_03_the_same_code_twice_in_a_row_fails_the_second_time():
    """MFA-03: the same TOTP code twice in a row: the second fails (``last_t``)."""
    user = make_user(role=Role.THERAPIST)
    device = enrol(user)
    code = code_at(device, T0)
    verify(user, code)
    before = device_state(user)

    with pytest.raises(UnauthorizedError) as refused:
        verify(user, code, now=T0 + timedelta(seconds=5))

    assert refused.value.code == "mfa_code_invalid"
    device.refresh_from_db()
    assert device.last_t == int(T0.timestamp()) // 30
    assert TokenFamily.objects.filter(user=user).count() == 1
    # only the failure counter moved
    assert [row[:4] for row in device_state(user)] == [row[:4] for row in before]


def test_mfa_03_an_earlier_steps_code_is_refused_after_a_later_one_passed():
    """MFA-03: once a step's code passed, that step and earlier ones are spent."""
    user = make_user(role=Role.THERAPIST)
    device = enrol(user)
    verify(user, code_at(device, T0 + STEP))  # the app runs a step ahead
    with pytest.raises(UnauthorizedError):
        verify(user, code_at(device, T0), now=T0 + timedelta(seconds=1))
    verify(user, code_at(device, T0 + 2 * STEP), now=T0 + 2 * STEP)  # the next step passes


# --- Back-off ---------------------------------------------------------------------------------


def test_mfa_05_wrong_codes_back_off_exponentially_1_2_4_8_seconds():
    """MFA-05: wrong codes back off 1, 2, 4, 8, 16 s; early guesses are not judged."""
    user = make_user(role=Role.THERAPIST)
    device = enrol(user)
    bad = wrong_code(device, T0)
    now = T0
    for failures, wait in enumerate([1, 2, 4, 8], start=1):
        with pytest.raises(UnauthorizedError):
            verify(user, bad, now=now)
        # Too early: refused without judging the code, and not counted.
        with pytest.raises(TooManyRequestsError) as throttled:
            verify(user, code_at(device, now), now=now + timedelta(seconds=wait - 0.5))
        assert throttled.value.code == "mfa_throttled"
        assert throttled.value.retry_after == 1
        device.refresh_from_db()
        assert device.throttling_failure_count == failures
        assert device.throttling_failure_timestamp == now
        now += timedelta(seconds=wait)

    with pytest.raises(UnauthorizedError):  # the 8 s have passed: the fifth guess is judged
        verify(user, bad, now=now)
    with pytest.raises(TooManyRequestsError) as throttled:
        verify(user, bad, now=now)
    assert throttled.value.retry_after == 16


@override_settings(MFA_BACKOFF_MAX_SECONDS=900)
def test_lgn_02_the_second_step_back_off_is_capped_so_it_never_locks_the_owner_out():
    user = make_user(role=Role.THERAPIST)
    device = enrol(user)
    TOTPDevice.objects.filter(pk=device.pk).update(
        throttling_failure_count=40, throttling_failure_timestamp=T0
    )
    device.refresh_from_db()
    assert device.throttle_wait(now=T0) == 900
    after_cap = T0 + timedelta(seconds=900)
    verify(user, code_at(device, after_cap), now=after_cap)


def test_mfa_05_a_success_after_the_wait_resets_the_counter():
    """MFA-05: a right code after the wait resets the failure counter."""
    user = make_user(role=Role.THERAPIST)
    device = enrol(user)
    for k in range(3):
        with pytest.raises(UnauthorizedError):
            verify(user, wrong_code(device, T0), now=T0 + timedelta(seconds=10 * k))
    later = T0 + timedelta(seconds=60)
    verify(user, code_at(device, later), now=later)
    device.refresh_from_db()
    assert (device.throttling_failure_count, device.throttling_failure_timestamp) == (0, None)


def test_mfa_05_each_failure_is_audited_and_kept_though_the_request_fails():
    """MFA-05: each failure (and each throttled try) is audited, without the code."""
    user = make_user(role=Role.THERAPIST)
    device = enrol(user)
    bad = wrong_code(device, T0)
    with pytest.raises(UnauthorizedError):
        verify(user, bad)
    with pytest.raises(TooManyRequestsError):
        verify(user, bad)

    events = list(AuditEvent.objects.filter(action="auth.mfa.failed").order_by("pk"))
    assert [(e.actor_id, e.outcome, e.details) for e in events] == [
        (user.pk, "denied", {"purpose": "sign_in", "reason": "wrong_code", "failures": 1}),
        (user.pk, "denied", {"purpose": "sign_in", "reason": "throttled", "failures": 1}),
    ]
    assert all(bad not in str(e.details) for e in events)


# --- Backup codes -------------------------------------------------------------------------------


def test_mfa_07_a_backup_code_signs_in_once():
    """MFA-07: a backup code signs in once (any case, hyphen optional), then is spent."""
    user = make_user(role=Role.COMPLIANCE_OFFICER)
    device = enrol(user)
    codes = backup_codes_for(user, device)
    assert len(codes) == 10 and len(set(codes)) == 10

    pair = verify(user, codes[0].upper().replace("-", ""), now=T0 + STEP)
    assert tokens.decode(pair.access, expected_typ=tokens.ACCESS, now=T0 + STEP).mfa
    with pytest.raises(UnauthorizedError):
        verify(user, codes[0], now=T0 + 3 * STEP)

    assert mfa.mfa_status(user=user).backup_codes_remaining == 9
    assert "auth.mfa.backup_code_used" in actions(actor_id=user.pk)


def test_mfa_07_backup_codes_are_stored_only_as_keyed_hashes():
    """MFA-07: a dump of the backup-code table shows no usable code, only keyed hashes."""
    user = make_user(role=Role.CLIENT)
    device = enrol(user)
    codes = backup_codes_for(user, device)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM api_backupcode")
        dump = repr(cursor.fetchall())
    for code in codes:
        assert code not in dump
        assert code.replace("-", "") not in dump
    stored = set(BackupCode.objects.filter(device=device).values_list("digest", flat=True))
    expected = {crypto.keyed_hash(c.replace("-", ""), purpose="mfa.backup_code") for c in codes}
    assert stored == expected


def test_mfa_07_regenerating_invalidates_every_earlier_code():
    """MFA-07: regenerating the backup codes invalidates every earlier one."""
    user = make_user(role=Role.CLIENT)
    device = enrol(user)
    old = backup_codes_for(user, device)
    new = backup_codes_for(user, device, now=T0 + STEP)
    assert not set(old) & set(new)
    with pytest.raises(UnauthorizedError):
        verify(user, old[1], now=T0 + 3 * STEP)
    verify(user, new[1], now=T0 + 4 * STEP)
    assert (
        actions(action="auth.mfa.backup_codes_regenerated")
        == ["auth.mfa.backup_codes_regenerated"] * 2
    )


def test_mfa_07_regenerating_needs_the_password_and_a_current_code():
    """MFA-07: regenerating needs the password and an unspent code; a refusal changes nothing."""
    user = make_user(role=Role.CLIENT)
    device = enrol(user)
    backup_codes_for(user, device)
    before = device_state(user)
    with pytest.raises(ForbiddenError) as refused:
        mfa.mfa_backup_codes_regenerate(
            user=user,
            password="not the password",
            code=code_at(device, T0 + STEP),
            now=T0 + STEP,
            request=http_request(),
        )
    assert refused.value.code == "password_invalid"
    with pytest.raises(ForbiddenError) as refused:
        mfa.mfa_backup_codes_regenerate(
            user=user,
            password=DEFAULT_PASSWORD,
            code=code_at(device, T0),  # already used
            now=T0 + timedelta(seconds=5),
            request=http_request(),
        )
    assert refused.value.code == "mfa_code_invalid"
    after = device_state(user)
    assert after[1:] == before[1:]  # the backup codes are untouched
    user.refresh_from_db()
    assert user.failed_login_count == 1  # the wrong password counts toward the account back-off


# --- Encryption at rest ---------------------------------------------------------------------------


def test_mfa_08_the_totp_key_is_ciphertext_at_rest():
    """MFA-08: the TOTP secret is ciphertext (with a key id) in the raw column."""
    user = make_user(role=Role.THERAPIST)
    device = enrol(user)
    with connection.cursor() as cursor:
        cursor.execute("SELECT encrypted_key FROM api_totpdevice WHERE id = %s", [device.pk])
        (stored,) = cursor.fetchone()
    assert stored.startswith(f"v1:{crypto.current_key_id()}:")
    assert device.key.hex() not in stored.lower()
    assert len(device.key) == mfa.KEY_BYTES


def test_mfa_08_a_key_copied_to_another_users_device_does_not_decrypt():
    """MFA-08: an encrypted secret copied to another user's device does not decrypt."""
    victim, attacker = make_user(role=Role.THERAPIST), make_user(role=Role.CLIENT)
    stolen = enrol(victim).encrypted_key
    device = enrol(attacker)
    TOTPDevice.objects.filter(pk=device.pk).update(encrypted_key=stolen)
    device.refresh_from_db()
    with pytest.raises(crypto.DecryptionError):
        _ = device.key


def test_mfa_08_the_provisioning_uri_carries_the_secret_shown_once():
    """MFA-08: the provisioning URI is returned by the enrolment only, never by the status."""
    user = make_user(role=Role.CLIENT, email="pat@example.test")
    enrolment = mfa.mfa_totp_begin(
        user=user,
        password=DEFAULT_PASSWORD,
        code=None,
        auth_time=FRESH,
        now=T0,
        request=http_request(),
    )
    device = TOTPDevice.objects.get(user=user)
    assert enrolment.otpauth_uri == (
        "otpauth://totp/Telehealth%3Apat%40example.test"
        f"?secret={enrolment.secret}&algorithm=SHA1&digits=6&period=30&issuer=Telehealth"
    )
    assert enrolment.secret not in device.encrypted_key
    assert not hasattr(mfa.mfa_status(user=user), "secret")


# --- Enrolment --------------------------------------------------------------------------------


def begin(user, *, code=None, auth_time=FRESH, now=T0, password=DEFAULT_PASSWORD):
    return mfa.mfa_totp_begin(
        user=user,
        password=password,
        code=code,
        auth_time=auth_time,
        now=now,
        request=http_request(),
    )


def confirm(user, code, *, keep=None, auth_time=FRESH, now=T0):
    return mfa.mfa_totp_confirm(
        user=user,
        code=code,
        auth_time=auth_time,
        keep_family_id=keep,
        now=now,
        request=http_request(),
    )


def test_mfa_09_a_device_stays_unconfirmed_until_a_valid_code():
    """MFA-09: a new device stays ``confirmed=False`` until a valid code is entered."""
    user = make_user(role=Role.THERAPIST)
    begin(user)
    pending = TOTPDevice.objects.get(user=user)
    assert (pending.confirmed, user.mfa_enabled) == (False, False)

    with pytest.raises(ForbiddenError):
        confirm(user, wrong_code(pending, T0))
    pending.refresh_from_db()
    user.refresh_from_db()
    assert (pending.confirmed, user.mfa_enabled) == (False, False)
    # a pending device is not a second factor for sign-in
    with pytest.raises(UnauthorizedError) as refused:
        verify(user, code_at(pending, T0))
    assert refused.value.code == "invalid_token"

    codes = confirm(
        user, code_at(pending, T0 + timedelta(seconds=2)), now=T0 + timedelta(seconds=2)
    )
    pending.refresh_from_db()
    user.refresh_from_db()
    assert (pending.confirmed, pending.confirmed_at, user.mfa_enabled) == (
        True,
        T0 + timedelta(seconds=2),
        True,
    )
    assert len(codes) == 10
    assert actions(actor_id=user.pk, action__startswith="auth.mfa.") == [
        "auth.mfa.enrolment_started",
        "auth.mfa.failed",
        "auth.mfa.enrolled",
    ]


@pytest.mark.parametrize("age", [601, 3600])
def test_mfa_09_enrolling_needs_a_recent_sign_in(age):
    """MFA-09: enrolling needs a fresh ``auth_time``."""
    user = make_user(role=Role.THERAPIST)
    with pytest.raises(ForbiddenError) as refused:
        begin(user, auth_time=FRESH - age)
    assert refused.value.code == "reauthentication_required"
    assert not TOTPDevice.objects.filter(user=user).exists()


def test_mfa_09_confirming_needs_a_recent_sign_in_too():
    """MFA-09: confirming the enrolment needs a fresh ``auth_time`` too."""
    user = make_user(role=Role.THERAPIST)
    begin(user)
    pending = TOTPDevice.objects.get(user=user)
    with pytest.raises(ForbiddenError) as refused:
        confirm(user, code_at(pending, T0), auth_time=FRESH - 601)
    assert refused.value.code == "reauthentication_required"
    pending.refresh_from_db()
    assert (pending.confirmed, pending.last_t) == (False, -1)


def test_mfa_09_enrolling_needs_the_password():
    """MFA-09: enrolling needs the password again."""
    user = make_user(role=Role.THERAPIST)
    with pytest.raises(ForbiddenError) as refused:
        begin(user, password="wrong password entirely")
    assert refused.value.code == "password_invalid"
    assert not TOTPDevice.objects.filter(user=user).exists()


def test_reenrolling_needs_a_code_of_the_current_device_and_keeps_it_until_confirmed():
    """MFA-09, MFA-07: replacing a device needs its code; its backup codes go with it."""
    user = make_user(role=Role.THERAPIST)
    old = enrol(user)
    old_codes = backup_codes_for(user, old)
    with pytest.raises(ForbiddenError) as refused:
        begin(user, now=T0 + STEP)
    assert refused.value.code == "mfa_code_required"
    with pytest.raises(ForbiddenError) as refused:
        begin(user, code=wrong_code(old, T0 + STEP), now=T0 + STEP)
    assert refused.value.code == "mfa_code_invalid"
    assert TOTPDevice.objects.filter(user=user).count() == 1

    later = T0 + 10 * STEP
    begin(user, code=code_at(old, later), now=later)
    new = TOTPDevice.objects.get(user=user, confirmed=False)
    verify(user, code_at(old, later + STEP), now=later + STEP)  # the old one still works

    kept = session_start(user=user, amr=["pwd"], now=later).family_id
    other = session_start(user=user, amr=["pwd"], now=later).family_id
    confirm(user, code_at(new, later + STEP), keep=kept, now=later + STEP)

    assert list(TOTPDevice.objects.filter(user=user).values_list("pk", flat=True)) == [new.pk]
    assert not BackupCode.objects.filter(device_id=old.pk).exists()
    assert kept in live_families(user) and other not in live_families(user)
    assert TokenFamily.objects.get(pk=other).revoked_reason == "mfa_changed"
    with pytest.raises(UnauthorizedError):
        verify(user, old_codes[0], now=later + 3 * STEP)


def test_confirming_without_a_begun_enrolment_is_a_conflict():
    user = make_user(role=Role.CLIENT)
    with pytest.raises(ConflictError) as refused:
        confirm(user, "123456")
    assert refused.value.code == "mfa_enrolment_not_started"


# --- Disable and reset ----------------------------------------------------------------------------


def disable(user, code, *, keep=None, auth_time=FRESH, now=T0, password=DEFAULT_PASSWORD):
    return mfa.mfa_disable(
        user=user,
        password=password,
        code=code,
        auth_time=auth_time,
        keep_family_id=keep,
        now=now,
        request=http_request(),
    )


@pytest.mark.parametrize("role", [Role.THERAPIST, Role.COMPLIANCE_OFFICER, Role.ADMIN])
def test_staff_cannot_turn_their_second_factor_off(role):
    user = make_user(role=role)
    device = enrol(user)
    before = device_state(user)
    with pytest.raises(ForbiddenError) as refused:
        disable(user, code_at(device, T0))
    assert refused.value.code == "mfa_required_for_role"
    assert device_state(user) == before
    user.refresh_from_db()
    assert user.mfa_enabled


def test_mfa_09_a_client_turns_it_off_with_password_code_and_a_recent_sign_in():
    """MFA-09: removing the device needs a fresh ``auth_time``, the password and a code."""
    user = make_user(role=Role.CLIENT)
    device = enrol(user)
    kept = session_start(user=user, amr=["pwd", "otp", "mfa"], now=T0).family_id
    session_start(user=user, amr=["pwd", "otp", "mfa"], now=T0)  # another sign-in
    before = device_state(user)

    with pytest.raises(ForbiddenError) as refused:
        disable(user, code_at(device, T0), auth_time=FRESH - 601, keep=kept)
    assert refused.value.code == "reauthentication_required"
    assert device_state(user) == before

    disable(user, code_at(device, T0), keep=kept)
    user.refresh_from_db()
    assert not user.mfa_enabled
    assert not TOTPDevice.objects.filter(user=user).exists()
    assert live_families(user) == {kept}
    assert actions(action="auth.mfa.disabled", actor_id=user.pk) == ["auth.mfa.disabled"]


def test_mfa_10_the_operator_reset_removes_the_factor_ends_sessions_and_is_audited():
    user = make_user(role=Role.THERAPIST)
    enrol(user)
    session_start(user=user, amr=["pwd", "otp", "mfa"], now=T0)

    removed = mfa.mfa_reset(user=user, reason="ID checked on a video call, ticket 42", now=T0)

    assert removed == 1
    user.refresh_from_db()
    assert not user.mfa_enabled
    assert not TOTPDevice.objects.filter(user=user).exists()
    assert live_families(user) == set()
    event = AuditEvent.objects.get(action="auth.mfa.reset")
    assert (event.actor_id, event.actor_label, event.resource_id) == (
        None,
        "operator",
        str(user.pk),
    )
    assert event.details == {
        "reason": "ID checked on a video call, ticket 42",
        "devices_removed": 1,
        "families_revoked": 1,
    }


# --- The sign-in step ---------------------------------------------------------------------------


def test_mfa_02_tokens_after_the_second_step_carry_amr_otp_mfa_and_auth_time():
    user = make_user(role=Role.THERAPIST)
    device = enrol(user)
    now = T0 + timedelta(seconds=3)
    pair = verify(user, code_at(device, now), now=now)
    for token, typ in ((pair.access, tokens.ACCESS), (pair.refresh, tokens.REFRESH)):
        claims = tokens.decode(token, expected_typ=typ, now=now)
        assert claims.amr == ("pwd", "otp", "mfa")
        assert claims.auth_time == int(now.timestamp())
        assert claims.sub == str(user.pk)
    family = TokenFamily.objects.get(pk=pair.family_id)
    assert (family.amr, family.auth_time) == (["pwd", "otp", "mfa"], now)
    event = AuditEvent.objects.get(action="auth.mfa.verified")
    assert (event.actor_id, event.details) == (user.pk, {"method": "totp"})


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda user: "not-a-jwt", id="garbage"),
        pytest.param(
            lambda user: session_start(user=user, amr=["pwd"], now=T0).access, id="access-token"
        ),
        pytest.param(
            lambda user: session_start(user=user, amr=["pwd"], now=T0).refresh, id="refresh-token"
        ),
        pytest.param(
            lambda user: mfa_challenge_issue(user=user, now=T0 - timedelta(seconds=301)),
            id="expired-challenge",
        ),
    ],
)
def test_the_second_step_needs_a_live_mfa_pending_token(make_token):
    user = make_user(role=Role.THERAPIST)
    device = enrol(user)
    token = make_token(user)
    families = TokenFamily.objects.count()
    with pytest.raises(UnauthorizedError) as refused:
        mfa.mfa_verify(mfa_token=token, code=code_at(device, T0), now=T0, request=http_request())
    assert refused.value.code == "invalid_token"
    assert TokenFamily.objects.count() == families
    device.refresh_from_db()
    assert (device.last_t, device.throttling_failure_count) == (-1, 0)


def test_the_second_step_refuses_a_deactivated_user():
    user = make_user(role=Role.THERAPIST)
    device = enrol(user)
    token = mfa_challenge_issue(user=user, now=T0)
    user.is_active = False
    user.save(update_fields=["is_active"])
    with pytest.raises(UnauthorizedError) as refused:
        mfa.mfa_verify(mfa_token=token, code=code_at(device, T0), now=T0, request=http_request())
    assert refused.value.code == "invalid_token"
    assert not TokenFamily.objects.filter(user=user).exists()


@override_settings(RATE_LIMIT_MFA_PER_IP_PER_MINUTE=2)
def test_the_mfa_step_is_limited_per_ip():
    user = make_user(role=Role.THERAPIST)
    device = enrol(user)
    for k in range(2):
        with pytest.raises(UnauthorizedError):
            verify(user, wrong_code(device, T0), now=T0 + timedelta(seconds=10 * k))
    with pytest.raises(TooManyRequestsError) as limited:
        verify(user, code_at(device, T0), now=T0 + timedelta(seconds=20))
    assert limited.value.code == "rate_limited"
    assert TOTPDevice.objects.get(user=user).throttling_failure_count == 2


def test_operator_enrolment_replaces_devices_and_ends_sessions():
    user = make_user(role=Role.THERAPIST)
    first = enrol(user)
    session_start(user=user, amr=["pwd"], now=T0)
    uri = mfa.mfa_totp_enrol_confirmed(user=user, now=T0)
    second = TOTPDevice.objects.get(user=user)
    assert second.pk != first.pk and second.confirmed
    assert uri.startswith("otpauth://totp/") and "secret=" in uri
    assert live_families(user) == set()
