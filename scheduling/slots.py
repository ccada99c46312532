"""The slot engine: bookable start times as a pure function of its inputs.

No database, no settings, no clock: the caller passes the therapist's schedule (weekly windows
and date overrides in the therapist's IANA zone, plus the booking policy), the busy intervals
(existing bookings and holds, imported calendars), the session length, the requested range and
``now``. The HTTP layer lists slots with it, and the booking code runs the very same function
again inside its write transaction, so the list and the check cannot disagree.

Semantics (see docs/scheduling.md):

* A window is a span of local wall-clock minutes on a local date, ``[start, end)`` with
  ``0 <= start < end <= 1440``. Overlapping or touching windows of a date are merged.
* Candidate starts lie on a wall-clock grid: window start + k * step. Each grid time is turned
  into an instant with ``fold=0`` (the first occurrence of a repeated wall time), so a repeated
  hour is not counted twice, and a wall time that does not exist (spring forward) gives no slot.
  A weekly 09:00 is 09:00 local on both sides of a DST change.
* The session ``[s, s + duration)`` must lie inside the instants whose local wall time is inside
  a window of their local date (contiguous: a session can run from one window into an adjacent
  one, including across midnight).
* Each session blocks ``[s - buffer_before, s + duration + buffer_after)``; that blocked range
  must not overlap any busy interval. Busy intervals of existing sessions are given as *their*
  blocked range (buffers included), so two sessions' blocked ranges never overlap.
* ``s >= now + min_notice`` and ``s < now + horizon``; at most ``max_per_day`` sessions per
  local date of the therapist (existing sessions counted by their start's local date).
* Returned: sorted, distinct, timezone-aware UTC datetimes ``s`` with ``start <= s < end``.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MINUTES_PER_DAY = 1440
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class WeeklyWindow:
    """Every ``weekday`` (Monday = 0) from ``start_minute`` to ``end_minute`` local time."""

    weekday: int
    start_minute: int
    end_minute: int


@dataclass(frozen=True, slots=True)
class ExtraHours:
    """Hours added on one local date, on top of the weekly windows."""

    on: date
    start_minute: int
    end_minute: int


@dataclass(frozen=True, slots=True)
class TimeOff:
    """No availability at all (weekly or extra) on the local dates ``first`` to ``last``."""

    first: date
    last: date


@dataclass(frozen=True, slots=True)
class Policy:
    buffer_before: timedelta = timedelta(0)
    buffer_after: timedelta = timedelta(0)
    min_notice: timedelta = timedelta(0)
    horizon: timedelta = timedelta(days=60)
    max_per_day: int | None = None
    step: timedelta = timedelta(minutes=30)


@dataclass(frozen=True, slots=True)
class Schedule:
    """One therapist's availability: windows in ``zone`` and the booking policy."""

    zone: ZoneInfo
    weekly: Sequence[WeeklyWindow] = ()
    extra: Sequence[ExtraHours] = ()
    time_off: Sequence[TimeOff] = ()
    policy: Policy = field(default_factory=Policy)


@dataclass(frozen=True, slots=True)
class Busy:
    """A blocked UTC range. ``session_start`` is set for existing sessions (bookings, holds):
    they count toward the daily maximum on the local date of that start."""

    start: datetime
    end: datetime
    session_start: datetime | None = None


def _seconds(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are not accepted")
    return int(moment.timestamp())


def _merge(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Union of half-open spans, touching spans joined."""
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        if hi <= lo:
            continue
        if merged and lo <= merged[-1][1]:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged


def _offset(zone: ZoneInfo, epoch: int) -> int:
    offset = datetime.fromtimestamp(epoch, tz=UTC).astimezone(zone).utcoffset()
    assert offset is not None
    return int(offset.total_seconds())


class _Offsets:
    """The zone's UTC offset over ``[lo, hi)`` as constant-offset segments (epoch seconds).

    Found by sampling every 6 hours and bisecting to the second where two samples differ
    (no zone changes its offset twice within 6 hours).
    """

    __slots__ = ("segments", "starts")

    def __init__(self, zone: ZoneInfo, lo: int, hi: int):
        samples = list(range(lo, hi, _SAMPLE)) + [hi]
        cuts = [lo]
        for a, b in zip(samples, samples[1:], strict=False):
            start_offset = _offset(zone, a)
            if start_offset == _offset(zone, b):
                continue
            while b - a > 1:  # offset(a) is the old offset, offset(b) the new one
                mid = (a + b) // 2
                if _offset(zone, mid) == start_offset:
                    a = mid
                else:
                    b = mid
            cuts.append(b)
        cuts.append(hi + 1)
        self.segments = [(a, b, _offset(zone, a)) for a, b in zip(cuts, cuts[1:], strict=False)]
        self.starts = [a for a, _, _ in self.segments]

    def local_day(self, epoch: int) -> int:
        """The local date of an instant, as days since 1970-01-01."""
        return (epoch + self.segments[bisect.bisect_right(self.starts, epoch) - 1][2]) // DAY

    def instant(self, wall: int) -> int | None:
        """The first instant whose local wall time is ``wall`` (fold=0), or None in a gap."""
        for lo, hi, off in self.segments:
            if lo <= wall - off < hi:
                return wall - off
        return None

    def span(self, wall_lo: int, wall_hi: int) -> list[tuple[int, int]]:
        """The instants whose local wall time is in ``[wall_lo, wall_hi)`` (within one date)."""
        pieces = []
        for lo, hi, off in self.segments:
            a, b = max(lo, wall_lo - off), min(hi, wall_hi - off)
            if b > a:
                pieces.append((a, b))
        return pieces


DAY = 86400
_SAMPLE = 6 * 3600
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _windows_by_day(schedule: Schedule, first: int, last: int) -> dict[int, list[tuple[int, int]]]:
    """Merged wall-clock windows (minutes) of each local date ``first..last`` (day numbers)."""
    weekly: dict[int, list[tuple[int, int]]] = {}
    for w in schedule.weekly:
        weekly.setdefault(w.weekday, []).append((w.start_minute, w.end_minute))
    extra: dict[int, list[tuple[int, int]]] = {}
    for x in schedule.extra:
        extra.setdefault(x.on.toordinal() - _EPOCH_ORDINAL, []).append(
            (x.start_minute, x.end_minute)
        )
    off = [
        (t.first.toordinal() - _EPOCH_ORDINAL, t.last.toordinal() - _EPOCH_ORDINAL)
        for t in schedule.time_off
    ]
    result: dict[int, list[tuple[int, int]]] = {}
    for day in range(first, last + 1):
        if any(a <= day <= b for a, b in off):
            continue
        spans = _merge(weekly.get((day + 3) % 7, []) + extra.get(day, []))  # 1970-01-01: Thu
        if spans:
            result[day] = spans
    return result


def open_slots(
    schedule: Schedule,
    *,
    duration: timedelta,
    busy: Sequence[Busy],
    start: datetime,
    end: datetime,
    now: datetime,
) -> list[datetime]:
    """Bookable session starts in ``[start, end)`` (see the module docstring)."""
    if duration <= timedelta(0):
        raise ValueError("duration must be positive")
    policy = schedule.policy
    step = int(policy.step.total_seconds()) // 60
    if step <= 0:
        raise ValueError("step must be at least one minute")
    length = int(duration.total_seconds())
    before = int(policy.buffer_before.total_seconds())
    after = int(policy.buffer_after.total_seconds())
    lo = max(_seconds(start), _seconds(now + policy.min_notice))
    hi = min(_seconds(end), _seconds(now + policy.horizon))
    if lo >= hi:
        return []

    # Local dates whose windows can hold a start in [lo, hi) or a session reaching into it.
    offsets = _Offsets(schedule.zone, lo - 3 * DAY, hi + 3 * DAY)
    windows = _windows_by_day(schedule, offsets.local_day(lo) - 1, offsets.local_day(hi) + 1)
    open_spans = _merge(
        piece
        for day, spans in windows.items()
        for a, b in spans
        for piece in offsets.span(day * DAY + a * 60, day * DAY + b * 60)
    )
    if not open_spans:
        return []
    span_starts = [a for a, _ in open_spans]

    blocked = _merge((_seconds(b.start), _seconds(b.end)) for b in busy)
    blocked_starts = [a for a, _ in blocked]
    cap = policy.max_per_day
    per_day: Counter[int] = Counter()
    if cap is not None:
        per_day.update(
            offsets.local_day(_seconds(b.session_start)) for b in busy if b.session_start
        )

    found: set[int] = set()
    for day, spans in windows.items():
        if cap is not None and per_day[day] >= cap:
            continue
        midnight = day * DAY
        for a, b in spans:
            pieces = offsets.span(midnight + a * 60, midnight + b * 60)
            if len(pieces) == 1 and pieces[0][1] - pieces[0][0] == (b - a) * 60:
                # No change of offset inside the window: the grid is plain arithmetic.
                starts: Iterable[int] = range(pieces[0][0], pieces[0][1], step * 60)
            else:
                starts = (
                    s
                    for minute in range(a, b, step)
                    if (s := offsets.instant(midnight + minute * 60)) is not None
                )
            for s in starts:
                if s < lo:
                    continue
                if s >= hi:
                    break
                # Inside one contiguous open span.
                i = bisect.bisect_right(span_starts, s) - 1
                if s + length > open_spans[i][1]:
                    continue
                # Blocked range clear of every busy interval.
                j = bisect.bisect_left(blocked_starts, s + length + after) - 1
                if j >= 0 and blocked[j][1] > s - before:
                    continue
                found.add(s)
    return [_EPOCH + timedelta(seconds=s) for s in sorted(found)]


def weekly_starts(
    *, first_start: datetime, zone: ZoneInfo, weeks: int, count: int
) -> list[datetime]:
    """``count`` UTC instants ``weeks`` weeks apart at ``first_start``'s local wall time in
    ``zone`` (a booking series): 09:00 stays 09:00 across DST, as the engine's windows do. Each
    wall time becomes an instant with ``fold=0``; one that does not exist on its date (spring
    forward) maps to an instant the engine never offers, so that occurrence is refused."""
    local = first_start.astimezone(zone)
    wall = time(local.hour, local.minute, local.second)
    return [
        datetime.combine(local.date() + timedelta(weeks=weeks * k), wall, tzinfo=zone).astimezone(
            UTC
        )
        for k in range(count)
    ]
