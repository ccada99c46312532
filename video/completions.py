"""Video sessions completed from their attendance (docs/video.md, "Attendance"); run every
minute by ``manage.py video_completions`` or the ``video_completions`` job.

A confirmed video or audio booking whose room is over (the therapist ended it, or its window
closed) within the last ``LOOKBACK`` and whose attended time is at least
``VIDEO_ATTENDED_MIN_SECONDS`` is completed by the system through ``booking_complete``, the
path the therapist's button takes (its audit event carries the attended time and the actual
start and end). Billing then pays the therapist out (``payout_create`` takes completed
sessions), so a session is paid out once it was attended, whether or not the therapist
remembers to mark it. A session with less attended time is left for the therapist (a no-show,
or a session held elsewhere); one older than ``LOOKBACK`` is never looked at again.

Idempotent: a completed booking is no longer confirmed; one changed meanwhile is skipped;
each booking is its own transaction.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q

from scheduling.bookings.services import IllegalTransition, booking_complete
from scheduling.models import Booking, BookingStatus
from video.selectors import ROOM_DELIVERIES, booking_attendance

logger = logging.getLogger("video.attendance")

LOOKBACK = timedelta(days=1)


def sessions_over(*, now: datetime) -> list[Booking]:
    """Confirmed bookings with a room that ended, or whose window closed, within LOOKBACK."""
    grace = timedelta(minutes=settings.VIDEO_ROOM_GRACE_MINUTES)
    ended = Q(video_room__ended_at__lte=now, video_room__ended_at__gt=now - LOOKBACK)
    closed = Q(end__lte=now - grace, end__gt=now - grace - LOOKBACK)
    return list(
        Booking.objects.filter(
            ended | closed,
            status=BookingStatus.CONFIRMED,
            session_type__delivery__in=ROOM_DELIVERIES,
            video_room__isnull=False,
        )
        .select_related("session_type")
        .order_by("start", "pk")
    )


def attended_sessions_complete(*, now: datetime) -> int:
    """Complete each session over whose attended time is enough; how many were completed."""
    completed = 0
    for booking in sessions_over(now=now):
        attended = booking_attendance(booking=booking, now=now).attended
        if attended.seconds < settings.VIDEO_ATTENDED_MIN_SECONDS:
            continue
        try:
            booking_complete(booking_id=booking.pk, by=None, now=now)
        except IllegalTransition:  # changed since it was read: nothing to do
            continue
        completed += 1
        logger.info("video: booking %s completed from attendance", booking.pk)
    return completed
