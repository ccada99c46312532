"""A session that took place: a confirmed booking of ``client_user`` with the ``therapist``
persona (made and confirmed in June 2025, so it has started on the real clock)."""

from __future__ import annotations

import pytest

from scheduling.bookings import services
from scheduling.models import Booking
from tests.scheduling.bookings.conftest import NOW, book, open_starts


@pytest.fixture
def session(profile, client_user) -> Booking:
    booking = book(client_user, profile, open_starts(profile)[0])
    return services.booking_confirm(booking_id=booking.pk, now=NOW)
