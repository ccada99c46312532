"""Video room writes: the window and joining (docs/video.md, "Rooms" and "Join")."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings

from scheduling.models import Booking


def room_window(*, booking: Booking) -> tuple[datetime, datetime]:
    """When the booking's room may be joined: ``VIDEO_ROOM_OPENS_MINUTES_BEFORE`` before the
    session's start to ``VIDEO_ROOM_GRACE_MINUTES`` after its end (``[opens_at, closes_at)``)."""
    return (
        booking.start - timedelta(minutes=settings.VIDEO_ROOM_OPENS_MINUTES_BEFORE),
        booking.end + timedelta(minutes=settings.VIDEO_ROOM_GRACE_MINUTES),
    )
