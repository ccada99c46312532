"""Booking fixtures: the scheduling fixtures (a listed New York therapist, weekdays 09:00-17:00,
50-minute sessions at 120.00 USD, 24 h notice) plus helpers to find open slots and book them."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from api.models import User
from scheduling import selectors
from scheduling.bookings import services
from scheduling.models import Booking, SessionType, TherapistProfile
from tests.scheduling.conftest import NOW

__all__ = ["NOW", "book", "open_starts", "session_type_of"]


def session_type_of(profile: TherapistProfile) -> SessionType:
    return SessionType.objects.filter(therapist=profile, is_active=True).order_by("created_at")[0]


def open_starts(
    profile: TherapistProfile, *, now: datetime = NOW, days: int = 7, after: timedelta | None = None
) -> list[datetime]:
    """The therapist's open starts from ``now + after`` (default: the notice) for ``days``."""
    start = now + (after if after is not None else timedelta(days=1, hours=1))
    return selectors.therapist_open_slots(
        therapist=profile,
        session_type=session_type_of(profile),
        start=start,
        end=start + timedelta(days=days),
        now=now,
    )


def book(
    client: User,
    profile: TherapistProfile,
    start: datetime,
    *,
    now: datetime = NOW,
    jurisdiction: str = "US-NY",
    session_type: SessionType | None = None,
) -> Booking:
    return services.booking_create(
        client=client,
        therapist_id=profile.pk,
        session_type_id=(session_type or session_type_of(profile)).pk,
        start=start,
        jurisdiction=jurisdiction,
        now=now,
    )


@pytest.fixture
def slot(profile: TherapistProfile) -> datetime:
    """The first open start a day and more after NOW (Tuesday 3 June 2025, 09:00 New York)."""
    return open_starts(profile)[0]
