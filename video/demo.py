"""``seed_demo`` step: a video call a newcomer can hold right after ``make run``.

Gives therapist1 a "Phone session" (audio) session type if missing, and makes sure client1 has
a confirmed video session with therapist1 whose room is open at ``demo.now``: the current
half hour's session (or the next one's, when its room already opens). It is booked through the
booking services as if made ``min_notice_minutes`` before its start (the slot engine's notice)
on extra hours added for that time, and confirmed as paid outside (no Stripe on a development
box); no emails go out.

Idempotent: while a confirmed video session of client1 with therapist1 has its room open, later
runs change nothing; once its window has passed, the next run books a fresh one. The summary
names its booking id: open ``/video/<booking id>/``. Everything is fake.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction

from api.errors import DomainError
from scheduling import services as scheduling_services
from scheduling.bookings import services as booking_services
from scheduling.models import (
    Booking,
    BookingNotification,
    BookingStatus,
    Delivery,
    OverrideKind,
    SessionType,
    TherapistProfile,
)
from video.services import room_window

if TYPE_CHECKING:
    from api.management.commands.seed_demo import Demo

CLIENT, THERAPIST, JURISDICTION = "client1", "therapist1", "US-NY"
CALL_TYPE = "Individual session"  # therapist1's video session type (scheduling/demo.py)
PHONE = ("Phone session", 50, 12000)  # name, minutes, price (USD minor units)
_GRID = timedelta(minutes=30)  # therapist1's slot step: starts on the hour and half hour


def seed_video(demo: Demo) -> None:
    therapist = TherapistProfile.objects.get(user=demo.users[THERAPIST])
    _phone_session_type(therapist=therapist, now=demo.now)
    booking = _open_call(demo=demo, therapist=therapist) or _book_call(
        demo=demo, therapist=therapist
    )
    if booking is None:
        demo.notes.append("Video: no demo call could be booked now (run seed_demo again later).")
        return
    opens_at, closes_at = room_window(booking=booking)
    demo.notes.append(
        f"Video: client1 and therapist1 have a call now (booking {booking.pk}, room open "
        f"{opens_at:%H:%M}-{closes_at:%H:%M} UTC): open /video/{booking.pk}/ as each of them, "
        f"or POST /api/v1/video/rooms/{booking.pk}/join (client1 with "
        f'{{"jurisdiction": "{JURISDICTION}"}}). therapist1 also offers an audio "Phone session".'
    )


def _phone_session_type(*, therapist: TherapistProfile, now: datetime) -> None:
    name, minutes, price = PHONE
    if not SessionType.objects.filter(therapist=therapist, name=name).exists():
        scheduling_services.session_type_create(
            profile=therapist,
            name=name,
            duration_minutes=minutes,
            price_minor=price,
            currency="USD",
            delivery=Delivery.AUDIO,
            now=now,
        )


def _open_call(*, demo: Demo, therapist: TherapistProfile) -> Booking | None:
    """client1's confirmed video session with therapist1 whose room is open now, if any."""
    opens = timedelta(minutes=settings.VIDEO_ROOM_OPENS_MINUTES_BEFORE)
    grace = timedelta(minutes=settings.VIDEO_ROOM_GRACE_MINUTES)
    return (
        Booking.objects.filter(
            client=demo.users[CLIENT],
            therapist=therapist,
            status=BookingStatus.CONFIRMED,
            session_type__delivery=Delivery.VIDEO,
            start__lte=demo.now + opens,
            end__gt=demo.now - grace,
        )
        .order_by("start")
        .first()
    )


def _call_start(now: datetime) -> datetime:
    """The current half hour's start, or the next one's when its room is already open."""
    floor = datetime.fromtimestamp(
        now.timestamp() // _GRID.total_seconds() * _GRID.total_seconds(), UTC
    )
    following = floor + _GRID
    opens = timedelta(minutes=settings.VIDEO_ROOM_OPENS_MINUTES_BEFORE)
    return following if following - opens <= now else floor


def _book_call(*, demo: Demo, therapist: TherapistProfile) -> Booking | None:
    session_type = SessionType.objects.get(therapist=therapist, name=CALL_TYPE, is_active=True)
    start = _call_start(demo.now)
    booked_at = start - timedelta(minutes=therapist.min_notice_minutes)
    try:
        with transaction.atomic():  # a refusal leaves no extra hours behind either
            _extra_hours(
                therapist=therapist,
                start=start,
                end=start + timedelta(minutes=session_type.duration_minutes),
                now=demo.now,
            )
            booking = booking_services.booking_create(
                client=demo.users[CLIENT],
                therapist_id=therapist.pk,
                session_type_id=session_type.pk,
                start=start,
                jurisdiction=JURISDICTION,
                now=booked_at,
            )
            if booking.status == BookingStatus.HELD:
                booking = booking_services.booking_confirm(
                    booking_id=booking.pk,
                    actor=therapist.user,
                    reason="paid_outside",
                    now=booked_at,
                )
    except DomainError:  # e.g. the time is taken: a later run tries again
        return None
    # Demo data announces nothing: the emails are marked sent before the commit delivers them.
    BookingNotification.objects.filter(booking=booking, sent_at__isnull=True).update(
        sent_at=demo.now
    )
    return booking


def _extra_hours(
    *, therapist: TherapistProfile, start: datetime, end: datetime, now: datetime
) -> None:
    """Extra hours covering ``[start, end)`` in the therapist's zone (two dates past midnight)."""
    zone = ZoneInfo(therapist.time_zone)
    local_start, local_end = start.astimezone(zone), end.astimezone(zone)
    first = local_start.hour * 60 + local_start.minute
    if local_end.date() == local_start.date():
        spans = [(local_start.date(), first, local_end.hour * 60 + local_end.minute)]
    else:
        spans = [(local_start.date(), first, 1440)]
        if local_end.hour or local_end.minute:
            spans.append((local_end.date(), 0, local_end.hour * 60 + local_end.minute))
    for on, start_minute, end_minute in spans:
        scheduling_services.availability_override_create(
            profile=therapist,
            kind=OverrideKind.EXTRA,
            first_date=on,
            last_date=on,
            start_minute=start_minute,
            end_minute=end_minute,
            now=now,
        )
