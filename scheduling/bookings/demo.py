"""``seed_demo`` step: a few demo bookings (after the scheduling step's therapists), so the
bookings list, the therapist's schedule and a client profile show something on a dev box.

Idempotent: a client who already has a live booking with that therapist is left as is. Sessions
are booked at the therapist's next open slots through the booking services, and the paid ones
confirmed as "paid outside" (no Stripe on a development box); no emails go out. Everything is
fake.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

from scheduling import selectors
from scheduling.bookings import services
from scheduling.clients.services import ClientDetails, EmergencyContact, client_profile_save
from scheduling.models import (
    Booking,
    BookingNotification,
    BookingStatus,
    ClientProfile,
    SessionType,
    TherapistProfile,
)

if TYPE_CHECKING:
    from api.management.commands.seed_demo import Demo

# (client key, therapist key, session type name, client's jurisdiction, weekly sessions)
_BOOKINGS = (
    ("client1", "therapist1", "Individual session", "US-NY", 1),
    ("client2", "therapist1", "Consultation", "US-NY", 1),
    ("client3", "therapist2", "EMDR session", "GB", 3),
)


def seed_bookings(demo: Demo) -> None:
    for client_key, therapist_key, type_name, jurisdiction, count in _BOOKINGS:
        client = demo.users[client_key]
        therapist = TherapistProfile.objects.get(user=demo.users[therapist_key])
        live = Booking.objects.filter(client=client, therapist=therapist).exclude(
            status=BookingStatus.CANCELLED
        )
        if live.exists():
            continue
        session_type = SessionType.objects.get(therapist=therapist, name=type_name, is_active=True)
        start = selectors.therapist_open_slots(
            therapist=therapist,
            session_type=session_type,
            start=demo.now + timedelta(days=2),
            end=demo.now + timedelta(days=9),
            now=demo.now,
        )[0]
        outcome = services.booking_series_create(
            client=client,
            therapist_id=therapist.pk,
            session_type_id=session_type.pk,
            first_start=start,
            frequency="weekly",
            count=count,
            jurisdiction=jurisdiction,
            on_conflict=services.ON_CONFLICT_SKIP,
            now=demo.now,
        )
        for occurrence in outcome.booked:
            assert occurrence.booking is not None
            if occurrence.booking.status == BookingStatus.HELD:
                services.booking_confirm(
                    booking_id=occurrence.booking.pk,
                    actor=therapist.user,
                    reason="paid_outside",
                    now=demo.now,
                )
    # Demo data announces nothing: the emails are marked sent before the commit delivers them.
    BookingNotification.objects.filter(sent_at__isnull=True, created_at=demo.now).update(
        sent_at=demo.now
    )
    client = demo.users["client1"]
    if not ClientProfile.objects.filter(user=client).exists():
        client_profile_save(
            user=client,
            details=ClientDetails(
                date_of_birth=date(1990, 1, 1),
                phone="+12025550123",  # a fictional 555 number
                emergency_contact=EmergencyContact("Demo Contact", "+12025550199", "friend"),
                home_jurisdiction="US-NY",
            ),
            now=demo.now,
        )
    demo.notes.append(
        "Bookings: client1 and client2 have sessions with therapist1 (GET /api/v1/bookings/; "
        "therapist1 sees them at GET /api/v1/therapists/me/schedule?period=week&date=...), "
        "client3 a weekly series with therapist2; client1 has a client profile."
    )
