"""Cancellation terms (pure): free until N elapsed hours before the start (exactly N is still
free), then a percentage or fixed late fee, never above the price; a therapist cancelling
always refunds in full. DST and the parties' time zones do not move the boundary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from scheduling.bookings.policy import Terms, is_free_to_cancel, late_fee, settlement
from scheduling.models import FeeRequestKind, LateFeeKind

START = datetime(2025, 6, 10, 13, tzinfo=UTC)
PERCENT_50 = Terms(
    price_minor=12000, free_until_hours=24, late_fee_kind=LateFeeKind.PERCENT, late_fee_value=50
)


def test_cancelling_exactly_n_hours_before_is_free_and_one_second_later_is_late():
    assert is_free_to_cancel(start=START, free_until_hours=24, now=START - timedelta(hours=24))
    assert not is_free_to_cancel(
        start=START, free_until_hours=24, now=START - timedelta(hours=24) + timedelta(seconds=1)
    )


def test_the_boundary_counts_elapsed_hours_across_a_dst_change():
    """A 09:00 New York session on the day of spring forward (Sunday 9 March 2025): 24 hours
    before is 08:00 local on Saturday; 09:00 Saturday is only 23 hours before, so late."""
    ny = ZoneInfo("America/New_York")
    start = datetime(2025, 3, 9, 9, tzinfo=ny)
    same_wall_time_day_before = datetime(2025, 3, 8, 9, tzinfo=ny)
    assert start.astimezone(UTC) - same_wall_time_day_before.astimezone(UTC) == timedelta(hours=23)
    assert not is_free_to_cancel(start=start, free_until_hours=24, now=same_wall_time_day_before)
    assert is_free_to_cancel(
        start=start, free_until_hours=24, now=datetime(2025, 3, 8, 8, tzinfo=ny)
    )
    # Fall back (Sunday 2 November 2025): the same wall time the day before is 25 hours earlier.
    start = datetime(2025, 11, 2, 9, tzinfo=ny)
    assert start.astimezone(UTC) - datetime(2025, 11, 1, 9, tzinfo=ny).astimezone(UTC) == timedelta(
        hours=25
    )
    assert is_free_to_cancel(
        start=start, free_until_hours=24, now=datetime(2025, 11, 1, 10, 0, tzinfo=ny)
    )
    assert not is_free_to_cancel(
        start=start, free_until_hours=24, now=datetime(2025, 11, 1, 10, 0, 1, tzinfo=ny)
    )


def test_the_parties_time_zones_do_not_matter():
    """The same instant written in the client's zone (Kolkata) and the therapist's (New York)."""
    now_in_kolkata = (START - timedelta(hours=23)).astimezone(ZoneInfo("Asia/Kolkata"))
    now_in_new_york = now_in_kolkata.astimezone(ZoneInfo("America/New_York"))
    assert is_free_to_cancel(start=START, free_until_hours=24, now=now_in_kolkata) is False
    assert is_free_to_cancel(start=START, free_until_hours=24, now=now_in_new_york) is False


@pytest.mark.parametrize(
    ("kind", "value", "price", "fee"),
    [
        (LateFeeKind.PERCENT, 50, 12000, 6000),
        (LateFeeKind.PERCENT, 33, 101, 33),  # 33.33 -> 33
        (LateFeeKind.PERCENT, 50, 101, 51),  # 50.5 -> 51 (half up)
        (LateFeeKind.PERCENT, 100, 12000, 12000),
        (LateFeeKind.FIXED, 2500, 12000, 2500),
        (LateFeeKind.FIXED, 50000, 12000, 12000),  # never more than the price
        (LateFeeKind.NONE, 0, 12000, 0),
    ],
)
def test_late_fee_amounts_are_integer_minor_units(kind, value, price, fee):
    terms = Terms(price_minor=price, free_until_hours=24, late_fee_kind=kind, late_fee_value=value)
    assert late_fee(terms) == fee


def test_a_client_cancelling_late_is_asked_the_fee_and_refunded_the_rest():
    result = settlement(
        terms=PERCENT_50,
        start=START,
        by_therapist=False,
        was_confirmed=True,
        now=START - timedelta(hours=2),
    )
    assert result is not None
    assert (result.kind, result.reason) == (
        FeeRequestKind.LATE_CANCELLATION_FEE,
        "client_cancelled_late",
    )
    assert (result.fee_minor, result.refund_minor) == (6000, 6000)


def test_a_client_cancelling_in_time_is_refunded_in_full():
    result = settlement(
        terms=PERCENT_50,
        start=START,
        by_therapist=False,
        was_confirmed=True,
        now=START - timedelta(days=3),
    )
    assert result is not None
    assert (result.kind, result.reason, result.fee_minor, result.refund_minor) == (
        FeeRequestKind.FULL_REFUND,
        "client_cancelled_in_time",
        0,
        12000,
    )


def test_a_therapist_cancelling_always_refunds_in_full_even_at_the_last_minute():
    result = settlement(
        terms=PERCENT_50,
        start=START,
        by_therapist=True,
        was_confirmed=True,
        now=START - timedelta(minutes=5),
    )
    assert result is not None
    assert (result.kind, result.reason, result.fee_minor) == (
        FeeRequestKind.FULL_REFUND,
        "therapist_cancelled",
        0,
    )


def test_a_late_cancellation_without_a_fee_policy_is_a_full_refund():
    terms = Terms(
        price_minor=12000, free_until_hours=24, late_fee_kind=LateFeeKind.NONE, late_fee_value=0
    )
    result = settlement(terms=terms, start=START, by_therapist=False, was_confirmed=True, now=START)
    assert result is not None
    assert (result.kind, result.reason, result.refund_minor) == (
        FeeRequestKind.FULL_REFUND,
        "client_cancelled_late",
        12000,
    )


def test_an_unpaid_hold_is_released_without_a_fee_and_a_free_session_settles_nothing():
    held = settlement(
        terms=PERCENT_50, start=START, by_therapist=False, was_confirmed=False, now=START
    )
    assert held is not None and (held.reason, held.fee_minor) == ("hold_released", 0)
    free = Terms(price_minor=0, free_until_hours=24, late_fee_kind="none", late_fee_value=0)
    assert (
        settlement(terms=free, start=START, by_therapist=False, was_confirmed=True, now=START)
        is None
    )
