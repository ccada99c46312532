"""Attendance intervals written by the signalling services (docs/video.md, "Attendance").

Called only from ``video.signalling`` with the room row locked (``video/locks.py``), so two
sockets never open the same kind twice; the database's partial unique constraint has the last
word. Times are the server's (the ``now`` the consumer read when the message arrived): a
client's clock plays no part.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import F, Value
from django.db.models.functions import Greatest

from api.compiled import insert_rows
from video.models import AttendanceInterval, AttendanceKind, IntervalEnd, Participant


def interval_open(*, participant: Participant, kind: AttendanceKind, now: datetime) -> bool:
    """Open a ``kind`` interval for ``participant`` at ``now``; False if one is open already
    (the partial unique constraint turns the INSERT away: one statement, no read first)."""
    opened = AttendanceInterval(participant=participant, kind=kind, started_at=now)
    return insert_rows([opened], ignore_conflicts=True) == 1


def intervals_close(
    *,
    participant: Participant,
    reason: IntervalEnd,
    now: datetime,
    kinds: tuple[AttendanceKind, ...] = tuple(AttendanceKind),
) -> int:
    """Close ``participant``'s open intervals of ``kinds`` at ``now`` (never before one's
    start, should the server's clock have stepped back); how many were open."""
    return AttendanceInterval.objects.filter(
        participant=participant, kind__in=kinds, ended_at__isnull=True
    ).update(ended_at=Greatest(Value(now), F("started_at")), end_reason=reason)
