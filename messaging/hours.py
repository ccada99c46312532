"""Office hours and quiet hours: pure functions of local wall-clock time (zoneinfo), so a
weekly 09:00 stays 09:00 across daylight-saving changes."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo


def _hhmm(value: str) -> time:
    return time.fromisoformat(value)


def within_office_hours(*, windows: list[dict[str, Any]], time_zone: str, now: datetime) -> bool:
    """Whether ``now`` falls in one of the weekly ``windows`` (``weekday`` 0 = Monday,
    ``start`` inclusive, ``end`` exclusive, local times). No windows: always (no promise)."""
    if not windows:
        return True
    local = now.astimezone(ZoneInfo(time_zone))
    clock = local.time().replace(tzinfo=None)
    return any(
        w["weekday"] == local.weekday() and _hhmm(w["start"]) <= clock < _hhmm(w["end"])
        for w in windows
    )


def within_quiet_hours(
    *, start: time | None, end: time | None, time_zone: str, now: datetime
) -> bool:
    """Whether ``now`` is in the daily quiet period ``[start, end)``, local time; a period
    that crosses midnight (22:00-07:00) is understood as such. None: never quiet."""
    if start is None or end is None or start == end:
        return False
    clock = now.astimezone(ZoneInfo(time_zone)).time().replace(tzinfo=None)
    if start < end:
        return start <= clock < end
    return clock >= start or clock < end
