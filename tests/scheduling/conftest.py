"""Scheduling fixtures: a listed therapist (verified licence, weekly hours, a session type)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from api.models import Role, User
from scheduling import services
from scheduling.models import Booking, BookingStatus, SessionType, TherapistProfile
from tests.factories import make_user

# A fixed "now" for service-level tests: Monday 2 June 2025, 08:00 UTC.
NOW = datetime(2025, 6, 2, 8, tzinfo=UTC)


def make_therapist(
    *,
    user: User | None = None,
    now: datetime = NOW,
    time_zone: str = "America/New_York",
    jurisdiction: str = "US-NY",
    verified: bool = True,
    hours: tuple[int, int] = (9 * 60, 17 * 60),
    duration: int = 50,
    price_minor: int = 12000,
    **fields: object,
) -> TherapistProfile:
    user = user or make_user(role=Role.THERAPIST, password=None)  # no hashing: fast
    profile = services.therapist_profile_create(
        user=user, display_name=f"Dr {user.full_name}", time_zone=time_zone, now=now, **fields
    )
    services.availability_rules_replace(
        profile=profile,
        windows=[services.WeeklyWindowInput(d, *hours) for d in range(5)],
        now=now,
    )
    services.session_type_create(
        profile=profile,
        name="Individual session",
        duration_minutes=duration,
        price_minor=price_minor,
        currency="USD",
        delivery="video",
        now=now,
    )
    licence = services.licence_create(
        profile=profile,
        jurisdiction=jurisdiction,
        number=f"LIC-{user.pk.hex[:8]}",
        expires_on=date(2030, 1, 1),
        actor=user,
        request=None,
        now=now,
    )
    if verified:
        admin = User.objects.filter(role=Role.ADMIN).first() or make_user(
            role=Role.ADMIN, password=None
        )
        services.licence_verify(licence_id=licence.pk, admin=admin, request=None, now=now)
    profile.refresh_from_db()
    return profile


def make_booking(
    *,
    therapist: TherapistProfile,
    client: User,
    start: datetime,
    status: str = BookingStatus.CONFIRMED,
    hold_expires_at: datetime | None = None,
    sequence: int = 0,
    now: datetime = NOW,
) -> Booking:
    """A booking row as issue 5's services will write it (buffers copied into the blocked range)."""
    session_type = SessionType.objects.filter(therapist=therapist).first()
    assert session_type is not None
    end = start + timedelta(minutes=session_type.duration_minutes)
    return Booking.objects.create(
        therapist=therapist,
        client=client,
        session_type=session_type,
        start=start,
        end=end,
        blocked_start=start - timedelta(minutes=therapist.buffer_before_minutes),
        blocked_end=end + timedelta(minutes=therapist.buffer_after_minutes),
        status=status,
        hold_expires_at=hold_expires_at,
        sequence=sequence,
        created_at=now,
        updated_at=now,
    )


@pytest.fixture(autouse=True)
def _at_fixed_clock(fixed_clock: datetime) -> datetime:
    """Every test here runs at one fixed instant (tests/clock.py), whatever the hour."""
    return fixed_clock


@pytest.fixture
def profile(therapist: User) -> TherapistProfile:
    """The ``therapist`` persona's listed profile (New York, weekdays 09:00-17:00)."""
    return make_therapist(user=therapist)


@pytest.fixture
def other_profile(other_therapist: User) -> TherapistProfile:
    return make_therapist(user=other_therapist, time_zone="Europe/London", jurisdiction="GB")
