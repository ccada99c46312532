"""Attendance arithmetic: pure functions over intervals, no I/O (docs/video.md, "Attendance").

An interval is a ``(start, end)`` pair of aware datetimes in server time, half-open
``[start, end)``; one still open is passed with ``end`` = now by the caller. The rules:

- A participant's intervals are first **merged**: sorted, overlapping or touching ones joined,
  empty or inverted ones dropped. Reports may arrive in any order and may overlap (a socket
  replaced while its interval was open, a reconnect): a moment counts once.
- The session's **attended time** is the overlap of the therapist's merged media intervals with
  the client's: only while both ends report their peer connection connected (and the server
  saw each socket hold its place in the call, see ``video.signalling``). One side alone is
  zero, however long.
- The **actual start and end** are the first and the last moment of that overlap (``None``
  when there is none); the gaps between (drops) are not attended time.
- Someone was **there by** a deadline when one of their intervals started before it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

Span = tuple[datetime, datetime]

__all__ = ["Attended", "Span", "attended", "intersection", "merged", "there_by", "total"]


def merged(spans: Iterable[Span]) -> list[Span]:
    """The union of ``spans`` as sorted, disjoint, non-touching intervals."""
    result: list[Span] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if result and start <= result[-1][1]:
            if end > result[-1][1]:
                result[-1] = (result[-1][0], end)
        else:
            result.append((start, end))
    return result


def intersection(a: Iterable[Span], b: Iterable[Span]) -> list[Span]:
    """The moments in both ``a`` and ``b`` (each merged first), as disjoint sorted intervals."""
    left, right = merged(a), merged(b)
    result: list[Span] = []
    i = j = 0
    while i < len(left) and j < len(right):
        start = max(left[i][0], right[j][0])
        end = min(left[i][1], right[j][1])
        if end > start:
            result.append((start, end))
        if left[i][1] <= right[j][1]:
            i += 1
        else:
            j += 1
    return result


def total(spans: Iterable[Span]) -> timedelta:
    """How long ``spans`` cover (overlaps counted once)."""
    return sum((end - start for start, end in merged(spans)), timedelta())


def there_by(spans: Iterable[Span], deadline: datetime) -> bool:
    """Whether any of ``spans`` started before ``deadline``."""
    return any(start < deadline and end > start for start, end in spans)


@dataclass(frozen=True)
class Attended:
    """The overlap of both sides' media: its parts, length and first and last moments."""

    spans: list[Span]
    duration: timedelta
    actual_start: datetime | None
    actual_end: datetime | None

    @property
    def seconds(self) -> int:
        """Whole seconds attended (rounded down)."""
        return int(self.duration.total_seconds())


def attended(therapist: Iterable[Span], client: Iterable[Span]) -> Attended:
    """The session's attendance from the therapist's and the client's media intervals."""
    both = intersection(therapist, client)
    return Attended(
        spans=both,
        duration=total(both),
        actual_start=both[0][0] if both else None,
        actual_end=both[-1][1] if both else None,
    )
