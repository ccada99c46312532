"""The test clock: tests that book, list slots or take payments run at a fixed instant.

Views read ``timezone.now()``; a test that computes "the next open slots" from the real clock
passes or fails with the hour it runs at. ``fixed_clock`` moves the process's clock to one
instant at the start of each test (time_machine); from there it runs on (``tick=True``), so
rows written one after another still have increasing times, and a run is the same whenever it
starts. The instant is ``TEST_NOW`` (an ISO 8601 instant with an offset) when set, else
``DEFAULT_NOW``; CI runs the scheduling and billing suites again at each of ``HARD_INSTANTS``
(see ``.ci/run``). The database's own clock (audit events' ``occurred_at``) is not moved.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import time_machine

# An ordinary weekday morning: Tuesday 3 November 2026, 14:20 UTC (09:20 in New York).
DEFAULT_NOW = datetime(2026, 11, 3, 14, 20, tzinfo=UTC)

# Instants known to be hard for calendars and slot engines: .ci/run passes each as TEST_NOW.
HARD_INSTANTS = {
    "sunday-evening": "2026-12-06T22:40:00-05:00",  # New York, 03:40 UTC Monday
    "before-dst-start": "2027-03-14T01:30:00-05:00",  # the hour before New York springs forward
    "before-dst-end": "2027-10-31T00:30:00+01:00",  # London, the night it falls back
    "month-end": "2027-01-31T23:30:00+00:00",
    "leap-day": "2028-02-29T12:00:00+00:00",
}


def clock_instant() -> datetime:
    """The instant the clock is fixed at: ``TEST_NOW`` or ``DEFAULT_NOW``."""
    raw = os.environ.get("TEST_NOW", "").strip()
    if not raw:
        return DEFAULT_NOW
    value = datetime.fromisoformat(raw)
    if value.tzinfo is None:
        raise pytest.UsageError(f"TEST_NOW needs a UTC offset: {raw!r}")
    return value.astimezone(UTC)


@pytest.fixture
def fixed_clock() -> Iterator[datetime]:
    """The process's clock starts the test at ``clock_instant()``; yields that instant."""
    instant = clock_instant()
    with time_machine.travel(instant, tick=True):
        yield instant
