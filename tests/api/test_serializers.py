"""``api.serializers.represent``: one output serializer, built once, gives what a serializer
built for each instance gives, in every thread."""

from __future__ import annotations

import threading

import pytest

from api.serializers import represent
from scheduling.bookings import services
from scheduling.bookings.serializers import BookingDetailOut, BookingOut
from scheduling.models import Booking
from tests.scheduling.bookings.conftest import open_starts
from tests.scheduling.conftest import NOW, make_therapist

pytestmark = pytest.mark.django_db


@pytest.fixture
def booking(therapist, client_user) -> Booking:
    profile = make_therapist(user=therapist)
    return services.booking_create(
        client=client_user,
        therapist_id=profile.pk,
        session_type_id=profile.session_types.get().pk,
        start=open_starts(profile)[0],
        jurisdiction="US-NY",
        now=NOW,
    )


def _loaded(booking: Booking) -> Booking:
    return (
        Booking.objects.select_related("therapist", "client", "session_type")
        .prefetch_related("transitions")
        .get(pk=booking.pk)
    )


def test_it_gives_what_the_serializer_gives(booking, client_user):
    held = _loaded(booking)
    services.booking_cancel(booking_id=booking.pk, by=client_user, reason="personal", now=NOW)
    cancelled = _loaded(booking)

    for each in (held, cancelled):
        assert represent(BookingOut, each) == BookingOut(each).data
        assert represent(BookingDetailOut, each) == BookingDetailOut(each).data
    assert [represent(BookingOut, b)["status"] for b in (held, cancelled)] == ["held", "cancelled"]
    assert len(represent(BookingDetailOut, cancelled)["transitions"]) == 2


def test_one_serializer_serves_every_call_and_thread(booking, monkeypatch):
    monkeypatch.setattr("api.serializers._built", {})
    built: list[int] = []
    original = BookingOut.__init__

    def counting(self, *args, **kwargs):
        built.append(threading.get_ident())
        original(self, *args, **kwargs)

    monkeypatch.setattr(BookingOut, "__init__", counting)
    outputs = [represent(BookingOut, booking) for _ in range(3)]
    other = threading.Thread(target=lambda: outputs.append(represent(BookingOut, booking)))
    other.start()
    other.join()

    assert len(built) == 1
    assert outputs == [outputs[0]] * 4
