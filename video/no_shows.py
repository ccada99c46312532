"""The therapist's no-show, recorded from the video room's attendance (docs/video.md,
"Attendance"); run every minute by ``manage.py video_no_shows`` or the ``video_no_shows`` job.

A confirmed video or audio booking whose no-show deadline (start + ``VIDEO_NO_SHOW_MINUTES``)
has passed and whose room window is still open is a **therapist no-show** when its client's
socket held a place in the room before the deadline and its therapist's did not: the client
came and waited, the therapist did not come. It goes through the path a therapist or an admin
uses (``booking_therapist_no_show``: cancelled, ``therapist_no_show``, a full refund, no fee),
with the system as the actor and the attendance as the audit event's evidence.

When nobody came, nothing is recorded automatically: there is no evidence either way (the
session may have been held elsewhere), and the booking stays for the therapist or support.
Bookings whose window has closed are never looked at again, so a session older than the
attendance records is never judged by them.

Idempotent: a booking is no longer confirmed once recorded, and one changed meanwhile (by the
therapist, concurrently) is skipped; each booking is its own transaction.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings

from scheduling.bookings.services import IllegalTransition, booking_therapist_no_show
from scheduling.models import Booking, BookingStatus
from video.evidence import CLIENT, THERAPIST, attendance_details
from video.selectors import ROOM_DELIVERIES, booking_attendance

logger = logging.getLogger("video.attendance")


def therapist_no_shows_due(*, now: datetime) -> list[Booking]:
    """Confirmed bookings with a room, past their no-show deadline, window still open."""
    deadline = now - timedelta(minutes=settings.VIDEO_NO_SHOW_MINUTES)
    window_open = now - timedelta(minutes=settings.VIDEO_ROOM_GRACE_MINUTES)
    return list(
        Booking.objects.filter(
            status=BookingStatus.CONFIRMED,
            session_type__delivery__in=ROOM_DELIVERIES,
            start__lte=deadline,
            end__gt=window_open,
            video_room__isnull=False,
        )
        .select_related("session_type")
        .order_by("start", "pk")
    )


def therapist_no_shows_record(*, now: datetime) -> int:
    """Record the therapist's no-show of each due booking the attendance shows it for; how
    many were recorded."""
    recorded = 0
    for booking in therapist_no_shows_due(now=now):
        attendance = booking_attendance(booking=booking, now=now)
        if not attendance.there_by_deadline(CLIENT) or attendance.there_by_deadline(THERAPIST):
            continue
        try:
            booking_therapist_no_show(
                booking_id=booking.pk,
                by=None,
                now=now,
                evidence=attendance_details(attendance),
            )
        except IllegalTransition:  # changed since it was read: nothing to do
            continue
        recorded += 1
        logger.info("video: therapist no-show recorded for booking %s", booking.pk)
    return recorded
