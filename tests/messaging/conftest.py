"""Messaging fixtures: the ``therapist`` persona treats ``client_user`` (a confirmed booking)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from api.models import User
from messaging import services
from messaging.models import Conversation
from scheduling.models import Booking, TherapistProfile
from tests.scheduling.conftest import make_booking, make_therapist


@pytest.fixture(autouse=True)
def _at_fixed_clock(fixed_clock: datetime) -> datetime:
    return fixed_clock


@pytest.fixture
def profile(therapist: User) -> TherapistProfile:
    return make_therapist(user=therapist)


@pytest.fixture
def booking(profile: TherapistProfile, client_user: User, fixed_clock: datetime) -> Booking:
    return make_booking(
        therapist=profile,
        client=client_user,
        start=fixed_clock + timedelta(days=2),
        now=fixed_clock - timedelta(days=1),
    )


@pytest.fixture
def conversation(booking: Booking, client_user: User, fixed_clock: datetime) -> Conversation:
    conversation, _ = services.conversation_open(
        booking_id=booking.pk, user=client_user, now=fixed_clock
    )
    return conversation


@pytest.fixture(autouse=True)
def attachments_dir(settings, tmp_path) -> Path:
    """Each test's attachments in its own directory (the default storage: local files)."""
    settings.MESSAGING_ATTACHMENT_STORAGE = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path / "attachments")},
    }
    return tmp_path / "attachments"
