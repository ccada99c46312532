"""The booking rules, judged without a database: which refusal comes first, and why.

``rules.refusal`` is the one place that orders them; ``booking_create``, each occurrence of a
series and a reschedule all call it (their own tests show each refusal end to end)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

import pytest

from scheduling.bookings import errors, rules
from scheduling.bookings.rules import Facts, Refusal
from scheduling.models import BookingStatus

BOOKABLE = Facts(
    licensed=True,
    accepting_new_clients=True,
    known=None,
    slot_open=True,
    client_overlaps=False,
)
EVERY_RULE_FAILS = Facts(
    licensed=False,
    accepting_new_clients=False,
    known=False,
    slot_open=False,
    client_overlaps=True,
)


def test_a_session_every_rule_allows_is_not_refused():
    assert rules.refusal(BOOKABLE) is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"licensed": False}, Refusal.NOT_LICENSED),
        ({"accepting_new_clients": False, "known": False}, Refusal.NOT_ACCEPTING_NEW_CLIENTS),
        ({"slot_open": False}, Refusal.SLOT_UNAVAILABLE),
        ({"client_overlaps": True}, Refusal.CLIENT_OVERLAP),
    ],
)
def test_each_rule_alone_refuses(change, expected):
    assert rules.refusal(dataclasses.replace(BOOKABLE, **change)) is expected


def test_the_rules_are_judged_licence_new_client_slot_then_overlap():
    facts = EVERY_RULE_FAILS
    seen = []
    for fix in (
        {"licensed": True},
        {"known": True},
        {"slot_open": True},
        {"client_overlaps": False},
    ):
        seen.append(rules.refusal(facts))
        facts = dataclasses.replace(facts, **fix)
    assert seen == [
        Refusal.NOT_LICENSED,
        Refusal.NOT_ACCEPTING_NEW_CLIENTS,
        Refusal.SLOT_UNAVAILABLE,
        Refusal.CLIENT_OVERLAP,
    ]
    assert rules.refusal(facts) is None


def test_a_therapist_taking_no_new_clients_is_booked_by_a_client_they_know():
    known = dataclasses.replace(BOOKABLE, accepting_new_clients=False, known=True)
    assert rules.refusal(known) is None


def test_whether_the_client_is_known_must_be_read_when_the_therapist_takes_no_new_clients():
    with pytest.raises(ValueError, match="known"):
        rules.refusal(dataclasses.replace(BOOKABLE, accepting_new_clients=False))


def test_the_licence_day_is_the_sessions_utc_date_or_today_when_later():
    now = datetime(2025, 3, 10, 12, tzinfo=UTC)
    assert rules.licence_day(start=datetime(2025, 3, 12, 23, 30, tzinfo=UTC), now=now) == date(
        2025, 3, 12
    )
    assert rules.licence_day(start=datetime(2025, 3, 9, 8, tzinfo=UTC), now=now) == date(
        2025, 3, 10
    )


@pytest.mark.parametrize(
    ("from_status", "to_status", "allowed"),
    [
        (BookingStatus.HELD, BookingStatus.CONFIRMED, True),
        (BookingStatus.HELD, BookingStatus.CANCELLED, True),
        (BookingStatus.HELD, BookingStatus.COMPLETED, False),
        (BookingStatus.CONFIRMED, BookingStatus.COMPLETED, True),
        (BookingStatus.CONFIRMED, BookingStatus.NO_SHOW, True),
        (BookingStatus.CONFIRMED, BookingStatus.HELD, False),
        (BookingStatus.CANCELLED, BookingStatus.CONFIRMED, False),
        (BookingStatus.COMPLETED, BookingStatus.CANCELLED, False),
    ],
)
def test_a_status_moves_only_along_next(from_status, to_status, allowed):
    assert rules.may_move(from_status=from_status, to_status=to_status) is allowed


@pytest.mark.parametrize("refusal", list(Refusal))
def test_each_refusal_is_answered_with_the_problem_code_of_its_name(refusal):
    assert errors.refused(refusal).code == refusal.value
