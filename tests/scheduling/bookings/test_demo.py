"""The ``seed_demo`` bookings step: a few confirmed demo sessions and a client profile, once."""

from __future__ import annotations

import io

import pytest
from django.core import mail
from django.core.management import call_command

from api.models import User
from scheduling.models import Booking, BookingNotification, BookingStatus, ClientProfile

pytestmark = pytest.mark.django_db


def test_seed_demo_books_a_few_sessions_once_and_sends_no_email(
    settings, django_capture_on_commit_callbacks
):
    settings.DEBUG = True
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo", stdout=io.StringIO())
        call_command("seed_demo", stdout=io.StringIO())
    bookings = Booking.objects.select_related("client", "therapist__user")
    pairs = sorted((b.client.email, b.therapist.user.email) for b in bookings)
    assert pairs == [
        ("client1@example.test", "therapist1@example.test"),
        ("client1@example.test", "therapist1@example.test"),  # the video call (video/demo.py)
        ("client2@example.test", "therapist1@example.test"),
        ("client3@example.test", "therapist2@example.test"),
        ("client3@example.test", "therapist2@example.test"),
        ("client3@example.test", "therapist2@example.test"),
    ]
    assert {b.status for b in bookings} == {BookingStatus.CONFIRMED}
    assert ClientProfile.objects.filter(user=User.objects.get(email="client1@example.test"))
    assert not BookingNotification.objects.filter(sent_at__isnull=True).exists()
    assert mail.outbox == []
