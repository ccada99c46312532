"""Call quality for support (docs/video.md, "Call quality").

Each client in a call sends a ``stats`` message every ``VIDEO_STATS_INTERVAL_SECONDS``: what
its peer connection measured over the period (round-trip time, the fraction of packets lost,
jitter, bitrates in and out, the resolution received, whether media goes through TURN). The
consumer checks that the socket is in the call and not reporting more often than
``VIDEO_STATS_MIN_SECONDS``; ``quality_sample_record`` stores it with the server's time
(``video.models.QualitySample``). Nothing in it can carry an address: the message's fields are
numbers and one boolean.

``quality_summary`` (pure) sums a participant's samples up: p50/p95 round-trip time, mean and
worst loss, median jitter and bitrate, and the time on relay (each sample stands for the time
since the one before, at most twice the interval: a gap in the reports is not counted).
``room_quality`` (the read) gives the booking's therapist or an admin the summary of each
participant and of the whole session.
"""

from __future__ import annotations

import math
import statistics
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings

from api.models import Role, User
from scheduling.models import Booking
from video.models import Participant, QualitySample
from video.services import BookingNotFound

# --- recording ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    """One ``stats`` message's fields (validated by ``video.protocol``)."""

    rtt_ms: float | None
    loss: float | None
    jitter_ms: float | None
    bitrate_in_kbps: float | None
    bitrate_out_kbps: float | None
    width: int | None
    height: int | None
    relay: bool


def quality_sample_record(*, participant_id: uuid.UUID, stats: Stats, now: datetime) -> None:
    """Store one report of a participant in the call, at the server's ``now``. Append-only:
    no lock (the consumer has checked that its socket is in the call)."""
    QualitySample.objects.create(
        participant_id=participant_id,
        at=now,
        rtt_ms=stats.rtt_ms,
        loss=stats.loss,
        jitter_ms=stats.jitter_ms,
        bitrate_in_kbps=stats.bitrate_in_kbps,
        bitrate_out_kbps=stats.bitrate_out_kbps,
        width=stats.width,
        height=stats.height,
        relay=stats.relay,
    )


# --- the summary (pure) -----------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    at: datetime
    rtt_ms: float | None
    loss: float | None
    jitter_ms: float | None
    bitrate_in_kbps: float | None
    relay: bool


@dataclass(frozen=True)
class QualitySummary:
    samples: int
    first_at: datetime | None
    last_at: datetime | None
    rtt_p50_ms: float | None
    rtt_p95_ms: float | None
    loss_mean: float | None
    loss_max: float | None
    jitter_p50_ms: float | None
    bitrate_in_p50_kbps: float | None
    reported_seconds: float
    relay_seconds: float


def _percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile ``q`` (0 to 1) of ``values``; None for none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def _present(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def _measures(samples: Sequence[Sample]) -> dict[str, float | None]:
    rtts = _present([s.rtt_ms for s in samples])
    losses = _present([s.loss for s in samples])
    return {
        "rtt_p50_ms": _percentile(rtts, 0.5),
        "rtt_p95_ms": _percentile(rtts, 0.95),
        "loss_mean": statistics.fmean(losses) if losses else None,
        "loss_max": max(losses) if losses else None,
        "jitter_p50_ms": _percentile(_present([s.jitter_ms for s in samples]), 0.5),
        "bitrate_in_p50_kbps": _percentile(_present([s.bitrate_in_kbps for s in samples]), 0.5),
    }


def quality_summary(samples: Sequence[Sample], *, interval_s: float) -> QualitySummary:
    """Sum up one participant's samples (in any order). Each sample stands for the time since
    the previous one, at most ``2 * interval_s`` (the first: ``interval_s``)."""
    ordered = sorted(samples, key=lambda s: s.at)
    reported = relay = 0.0
    previous: datetime | None = None
    for sample in ordered:
        span = (
            interval_s
            if previous is None
            else min((sample.at - previous).total_seconds(), 2 * interval_s)
        )
        reported += span
        relay += span if sample.relay else 0.0
        previous = sample.at
    return QualitySummary(
        samples=len(ordered),
        first_at=ordered[0].at if ordered else None,
        last_at=ordered[-1].at if ordered else None,
        reported_seconds=reported,
        relay_seconds=relay,
        **_measures(ordered),
    )


def session_summary(people: Sequence[QualitySummary], samples: Sequence[Sample]) -> QualitySummary:
    """The whole session: the measures over everyone's ``samples``; its reported and relayed
    time, the longest of any participant's."""
    return QualitySummary(
        samples=len(samples),
        first_at=min((s.at for s in samples), default=None),
        last_at=max((s.at for s in samples), default=None),
        reported_seconds=max((p.reported_seconds for p in people), default=0.0),
        relay_seconds=max((p.relay_seconds for p in people), default=0.0),
        **_measures(samples),
    )


# --- the read ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PersonQuality:
    participant_id: uuid.UUID
    role: str
    summary: QualitySummary


@dataclass(frozen=True)
class RoomQuality:
    booking: Booking
    people: list[PersonQuality] = field(default_factory=list)
    session: QualitySummary | None = None


def room_quality(*, booking_id: uuid.UUID, user: User) -> RoomQuality:
    """The call quality of a booking's session, for its therapist or an admin (anyone else:
    ``BookingNotFound``, the same answer as for no such booking). Three queries: the booking
    with its therapist and room, the room's participants, then their samples."""
    booking = (
        Booking.objects.select_related("therapist", "video_room").filter(pk=booking_id).first()
    )
    if booking is None or not (user.role == Role.ADMIN or booking.therapist.user_id == user.pk):
        raise BookingNotFound()
    room = getattr(booking, "video_room", None)
    if room is None:
        return RoomQuality(booking=booking)
    interval = float(settings.VIDEO_STATS_INTERVAL_SECONDS)
    by_person: dict[uuid.UUID, list[Sample]] = {}
    roles: dict[uuid.UUID, str] = {
        p.pk: p.role for p in Participant.objects.filter(room=room).order_by("created_at", "pk")
    }
    for row in QualitySample.objects.filter(participant__room=room).order_by("at", "pk"):
        by_person.setdefault(row.participant_id, []).append(
            Sample(row.at, row.rtt_ms, row.loss, row.jitter_ms, row.bitrate_in_kbps, row.relay)
        )
    people = [
        PersonQuality(pid, role, quality_summary(by_person.get(pid, []), interval_s=interval))
        for pid, role in roles.items()
    ]
    everyone = [sample for samples in by_person.values() for sample in samples]
    session = session_summary([p.summary for p in people], everyone)
    return RoomQuality(booking=booking, people=people, session=session)
