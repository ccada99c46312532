"""``api.serializers``: ``represent`` (one output serializer, built once, gives what a
serializer built for each instance gives, in every thread) and ``StrictInputSerializer``'s
refusal of anything but a string in a text field, ``OffsetDateTimeField``'s bounds as the
schema states them."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime

import pytest
from django.http import QueryDict
from rest_framework import serializers

from api.serializers import THIS_CENTURY, OffsetDateTimeField, StrictInputSerializer, represent
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


class ContactIn(StrictInputSerializer):
    name = serializers.CharField(max_length=20)
    email = serializers.EmailField(required=False)
    code = serializers.RegexField(r"^[0-9]{6}$", required=False)
    tags = serializers.ListField(child=serializers.CharField(), required=False)
    note = serializers.CharField(allow_null=True, required=False)
    count = serializers.IntegerField(required=False)


def _errors(data: object) -> dict[str, list[tuple[str, str]]]:
    serializer = ContactIn(data=data)
    serializer.is_valid()
    return {
        field: [(str(error), error.code) for error in errors]
        for field, errors in serializer.errors.items()
    }


NOT_TEXT = [("Not a valid string.", "invalid")]


@pytest.mark.parametrize("value", [0, 123456, 1.5, True, False, {"a": "b"}])
def test_api_04_text_fields_take_strings_only(value):
    """A number is not text: DRF's CharField (and the fields built on it) would store ``0`` as
    ``"0"`` and a six-digit number would pass as a code, against the schema's ``type: string``."""
    assert _errors({"name": value}) == {"name": NOT_TEXT}
    assert _errors({"name": "x", "code": value}) == {"code": NOT_TEXT}
    assert _errors({"name": "x", "email": value}) == {"email": NOT_TEXT}
    assert _errors({"name": "x", "tags": ["a", value]}) == {"tags": NOT_TEXT}


def test_api_04_wrong_types_are_reported_with_every_other_invalid_field():
    assert _errors({"name": 5, "code": "12", "count": "x"}) == {
        "name": NOT_TEXT,
        "code": [("This value does not match the required pattern.", "invalid")],
        "count": [("A valid integer is required.", "invalid")],
    }
    assert _errors({"name": 5, "rank": 1}) == {
        "rank": [("This field is not allowed.", "unknown_field")]
    }


def test_strings_null_and_absence_are_the_fields_own_business():
    serializer = ContactIn(data={"name": "Ann", "code": "123456", "tags": [], "note": None})
    assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data == {"name": "Ann", "code": "123456", "tags": [], "note": None}
    assert _errors({}) == {"name": [("This field is required.", "required")]}
    assert _errors({"name": None}) == {"name": [("This field may not be null.", "null")]}


class WhenIn(StrictInputSerializer):
    at = OffsetDateTimeField(bounds=THIS_CENTURY)


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("2000-01-01T00:30:00+01:00", True),  # 1999 in UTC, but written in 2000
        ("2099-12-31T23:59:59-05:00", True),  # 2100 in UTC, but written in 2099
        ("1999-12-31T23:30:00-01:00", False),  # 2000 in UTC, but written in 1999
        ("2100-01-01T00:30:00+01:00", False),
    ],
)
def test_api_04_a_bounded_date_time_is_judged_as_written_as_the_schema_pattern_is(value, valid):
    """What the schema's pattern accepts (the year as written) is what the server accepts:
    a generator that keeps to the document is not refused at the edges of the century."""
    pattern = re.compile(WhenIn().fields["at"]._spectacular_annotation["field"]["pattern"])
    assert bool(pattern.match(value)) is valid
    assert WhenIn(data={"at": value}).is_valid() is valid


def test_bounds_are_whole_centuries():
    with pytest.raises(ValueError, match="one whole century"):
        OffsetDateTimeField(
            bounds=(datetime(2000, 1, 1, tzinfo=UTC), datetime(2050, 1, 1, tzinfo=UTC))
        )


def test_api_04_a_query_parameter_sent_empty_is_a_value_not_an_absence():
    """DRF reads a ``QueryDict`` as an HTML form, where an optional field sent empty counts as
    absent: ``?code=`` was accepted although the schema's pattern refuses "". A query string is
    judged as a body is, whichever the view passes."""
    for data in (QueryDict("name=Ann&code="), {"name": "Ann", "code": ""}):
        serializer = ContactIn(data=data)
        assert not serializer.is_valid()
        assert serializer.errors == {"code": ["This field may not be blank."]}
    serializer = ContactIn(data=QueryDict("name=Bo&name=Ann&tags=a&tags=b"))
    assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data == {"name": "Ann", "tags": ["a", "b"]}
