"""Parallel requests against one device, on PostgreSQL with real connections (one per thread)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.test import override_settings

from api.errors import DomainError
from api.models import TokenFamily, TOTPDevice
from api.services import mfa
from api.services.sessions import mfa_challenge_issue
from tests.api.mfa_support import T0, code_at, enrol, http_request, wrong_code
from tests.concurrency import run_at_once
from tests.factories import DEFAULT_PASSWORD, make_user

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

PARALLEL = 8


def in_parallel(task: Callable[[int], Any], n: int = PARALLEL) -> Counter[str]:
    """Run ``task(i)`` in ``n`` threads released together; count the outcomes by name."""
    outcomes = Counter[str]()
    for result in run_at_once(task, n):
        if isinstance(result, BaseException) and not isinstance(result, DomainError):
            raise result
        outcomes[result.code if isinstance(result, DomainError) else "ok"] += 1
    return outcomes


def verify(user, code):
    challenge = mfa_challenge_issue(user=user, now=T0)
    return lambda i: mfa.mfa_verify(mfa_token=challenge, code=code, now=T0, request=http_request())


def test_mfa_04_one_code_in_parallel_requests_signs_in_exactly_once():
    """MFA-04: one TOTP code in eight parallel requests signs in exactly once (row lock)."""
    user = make_user(role="therapist")
    device = enrol(user)

    outcomes = in_parallel(verify(user, code_at(device, T0)))

    # one wins; the next finds the code spent (a counted failure); the rest meet the back-off
    assert outcomes == Counter({"ok": 1, "mfa_code_invalid": 1, "mfa_throttled": PARALLEL - 2})
    assert TokenFamily.objects.filter(user=user).count() == 1
    device.refresh_from_db()
    assert device.last_t == int(T0.timestamp()) // 30


def test_mfa_05_parallel_wrong_guesses_get_one_judgement_per_back_off_window():
    """MFA-05: parallel wrong guesses: one is judged, the rest meet the back-off it started."""
    user = make_user(role="therapist")
    device = enrol(user)

    outcomes = in_parallel(verify(user, wrong_code(device, T0)))

    # the first judged guess starts the 1 s back-off: every other one waits, none slips through
    assert outcomes == Counter({"mfa_code_invalid": 1, "mfa_throttled": PARALLEL - 1})
    device.refresh_from_db()
    assert device.throttling_failure_count == 1


@override_settings(OTP_TOTP_THROTTLE_FACTOR=0)  # no back-off: every guess is judged
def test_mfa_05_parallel_wrong_guesses_are_each_counted():
    """MFA-05: with no back-off, every one of the parallel wrong guesses is counted."""
    user = make_user(role="therapist")
    device = enrol(user)

    outcomes = in_parallel(verify(user, wrong_code(device, T0)))

    assert outcomes == Counter({"mfa_code_invalid": PARALLEL})
    device.refresh_from_db()
    assert device.throttling_failure_count == PARALLEL


def test_mfa_07_one_backup_code_in_parallel_requests_signs_in_exactly_once():
    """MFA-07: one backup code in eight parallel requests signs in exactly once."""
    user = make_user(role="compliance_officer")
    device = enrol(user)
    codes = mfa.mfa_backup_codes_regenerate(
        user=user,
        password=DEFAULT_PASSWORD,
        code=code_at(device, T0),
        now=T0,
        request=http_request(),
    )

    outcomes = in_parallel(verify(user, codes[0]))

    # one wins; the next finds the code spent (a counted failure); the rest meet the back-off
    assert outcomes == Counter({"ok": 1, "mfa_code_invalid": 1, "mfa_throttled": PARALLEL - 2})
    assert TokenFamily.objects.filter(user=user).count() == 1
    assert mfa.mfa_status(user=user).backup_codes_remaining == 9


def test_mfa_04_parallel_confirmations_of_one_enrolment_enable_it_once():
    """MFA-04, MFA-09: parallel confirmations of one enrolment with one code confirm it once."""
    user = make_user(role="therapist")
    mfa.mfa_totp_begin(
        user=user,
        password=DEFAULT_PASSWORD,
        code=None,
        auth_time=int(T0.timestamp()),
        now=T0,
        request=http_request(),
    )
    pending = TOTPDevice.objects.get(user=user)
    code = code_at(pending, T0)

    outcomes = in_parallel(
        lambda i: mfa.mfa_totp_confirm(
            user=user,
            code=code,
            auth_time=int(T0.timestamp()),
            keep_family_id=None,
            now=T0,
            request=http_request(),
        )
    )

    # one confirms; the others find no pending device left, or its code already used
    assert outcomes["ok"] == 1
    assert sum(outcomes.values()) == PARALLEL
    assert set(outcomes) <= {"ok", "mfa_enrolment_not_started"}
    device = TOTPDevice.objects.get(user=user)
    assert device.confirmed and device.backup_codes.count() == 10
