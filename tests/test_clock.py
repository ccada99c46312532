"""The test clock (tests/clock.py): what scheduling and billing tests see as now."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.utils import timezone

from tests.clock import DEFAULT_NOW, HARD_INSTANTS, clock_instant


def test_the_clock_is_test_now_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_NOW", HARD_INSTANTS["before-dst-start"])
    assert clock_instant() == datetime(2027, 3, 14, 6, 30, tzinfo=UTC)


def test_the_clock_is_the_default_instant_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_NOW", raising=False)
    assert clock_instant() == DEFAULT_NOW


def test_an_instant_without_an_offset_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_NOW", "2027-03-14T01:30:00")
    with pytest.raises(pytest.UsageError):
        clock_instant()


def test_fixed_clock_moves_what_the_views_read(fixed_clock: datetime) -> None:
    now = timezone.now()
    assert fixed_clock <= now
    assert (now - fixed_clock).total_seconds() < 60  # it runs on from the instant
    assert fixed_clock == clock_instant()
