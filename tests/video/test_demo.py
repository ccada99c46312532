"""The ``seed_demo`` video step: a confirmed video call whose room is open now, idempotently."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.apps import apps

from api.management.commands.seed_demo import Demo, seed_people
from scheduling.bookings.demo import seed_bookings
from scheduling.demo import seed_scheduling
from scheduling.models import Booking, BookingStatus, Delivery, SessionType
from tests.factories import api_client_for
from video.demo import seed_video
from video.services import room_window

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast(fixed_clock: datetime, settings) -> datetime:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return fixed_clock


def _seed(now: datetime) -> Demo:
    demo = Demo(now=now)
    for step in (seed_people, seed_scheduling, seed_bookings, seed_video):
        step(demo)
    return demo


def _row_counts() -> dict[str, int]:
    return {model._meta.label: model.objects.count() for model in apps.get_models()}


def _calls(demo: Demo) -> list[Booking]:
    return list(
        Booking.objects.filter(
            client=demo.users["client1"],
            therapist__user=demo.users["therapist1"],
            session_type__delivery=Delivery.VIDEO,
            status=BookingStatus.CONFIRMED,
        ).order_by("start")
    )


def _open_now(demo: Demo) -> list[Booking]:
    return [
        b for b in _calls(demo) if room_window(booking=b)[0] <= demo.now < room_window(booking=b)[1]
    ]


def test_the_step_books_a_confirmed_video_call_open_now_and_names_it(fixed_clock):
    demo = _seed(fixed_clock)
    [call] = _open_now(demo)
    assert call.status == BookingStatus.CONFIRMED
    assert call.session_type.delivery == Delivery.VIDEO
    opens_at, closes_at = room_window(booking=call)
    assert opens_at <= fixed_clock < closes_at
    assert closes_at - fixed_clock >= timedelta(minutes=35)  # time enough for a call
    assert any(f"/video/{call.pk}/" in note for note in demo.notes)
    phone = SessionType.objects.get(therapist__user=demo.users["therapist1"], name="Phone session")
    assert (phone.delivery, phone.is_active) == (Delivery.AUDIO, True)
    # Both can join it at once.
    client = api_client_for(demo.users["client1"], mfa=False)
    therapist = api_client_for(demo.users["therapist1"])
    url = f"/api/v1/video/rooms/{call.pk}/join"
    assert client.post(url, {"jurisdiction": "US-NY"}, format="json").status_code == 200
    assert therapist.post(url, {}, format="json").status_code == 200


def test_a_second_run_changes_nothing(fixed_clock):
    first = _seed(fixed_clock)
    before = _row_counts()
    second = _seed(fixed_clock + timedelta(minutes=20))
    assert _row_counts() == before
    assert [n for n in first.notes if n.startswith("Video:")] == [
        n for n in second.notes if n.startswith("Video:")
    ]


def test_once_the_window_has_passed_a_fresh_call_is_booked(fixed_clock):
    first = _seed(fixed_clock)
    [old] = _open_now(first)
    calls_before = len(_calls(first))
    later = _seed(fixed_clock + timedelta(hours=3))
    [new] = _open_now(later)
    assert new.pk != old.pk
    assert len(_calls(later)) == calls_before + 1
    assert SessionType.objects.filter(name="Phone session").count() == 1


@pytest.mark.parametrize("minute", [0, 5, 21, 29, 30, 47, 59])
def test_a_call_is_open_whatever_the_minute(fixed_clock, minute):
    now = fixed_clock.replace(minute=minute)
    demo = _seed(now)
    [call] = _open_now(demo)
    assert room_window(booking=call)[1] - now >= timedelta(minutes=35)


def test_a_call_at_night_crosses_midnight_in_the_therapists_zone(fixed_clock):
    # 23:40 in New York (04:40 UTC, EST in November): the call runs past local midnight.
    now = datetime.fromisoformat("2026-11-04T04:40:00+00:00")
    demo = _seed(now)
    [call] = _open_now(demo)
    assert call.start.isoformat() == "2026-11-04T04:30:00+00:00"
