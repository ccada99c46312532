"""Recurring series: same local time across DST, each occurrence checked by the same rules as a
single booking (not only the first), collisions reported, and the client's choice to book the
rest (skip) or none (abort); a dry run reports without writing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from api.errors import UnprocessableError
from scheduling import services as scheduling_services
from scheduling.bookings import services
from scheduling.bookings.errors import SeriesConflicts
from scheduling.bookings.series import series_starts
from scheduling.models import (
    Booking,
    BookingNotification,
    BookingSeries,
    BookingStatus,
    Licence,
    NotificationKind,
)
from tests.scheduling.bookings.conftest import book, session_type_of
from tests.scheduling.conftest import make_therapist

pytestmark = pytest.mark.django_db

NY = ZoneInfo("America/New_York")
# Monday 13 October 2025; New York falls back on Sunday 2 November.
AUTUMN = datetime(2025, 10, 13, 12, tzinfo=UTC)
FIRST = datetime(2025, 10, 21, 9, tzinfo=NY)  # a Tuesday, 09:00 EDT


@pytest.fixture
def ny_profile(therapist):
    return make_therapist(user=therapist, now=AUTUMN)


def _series(client, profile, *, count=4, frequency="weekly", on_conflict="abort", dry_run=False):
    return services.booking_series_create(
        client=client,
        therapist_id=profile.pk,
        session_type_id=session_type_of(profile).pk,
        first_start=FIRST,
        frequency=frequency,
        count=count,
        jurisdiction="US-NY",
        on_conflict=on_conflict,
        dry_run=dry_run,
        now=AUTUMN,
    )


def test_occurrences_keep_the_local_time_across_the_dst_change():
    starts = series_starts(first_start=FIRST, zone=NY, frequency="weekly", count=4)
    assert [s.astimezone(NY).strftime("%a %H:%M") for s in starts] == ["Tue 09:00"] * 4
    assert [s.strftime("%m-%d %H:%M") for s in starts] == [
        "10-21 13:00",
        "10-28 13:00",
        "11-04 14:00",  # EST: one hour later in UTC
        "11-11 14:00",
    ]
    fortnightly = series_starts(first_start=FIRST, zone=NY, frequency="fortnightly", count=3)
    assert [s.astimezone(NY).date() for s in fortnightly] == [
        date(2025, 10, 21),
        date(2025, 11, 4),
        date(2025, 11, 18),
    ]


def test_a_weekly_series_books_every_occurrence_as_an_ordinary_hold(ny_profile, client_user):
    outcome = _series(client_user, ny_profile)
    assert outcome.series is not None and not outcome.conflicts
    bookings = list(Booking.objects.filter(series=outcome.series).order_by("start"))
    assert [b.start.astimezone(NY).hour for b in bookings] == [9, 9, 9, 9]
    assert {b.status for b in bookings} == {BookingStatus.HELD}
    assert {(b.price_minor, b.client_jurisdiction) for b in bookings} == {(12000, "US-NY")}
    # One announcement (with every occurrence in its .ics) per participant, not one per session.
    rows = BookingNotification.objects.filter(kind=NotificationKind.BOOKED)
    assert rows.count() == 2
    assert {r.dedupe_key for r in rows} == {f"series:{outcome.series.pk}"}


def test_a_collision_aborts_the_whole_series_by_default(ny_profile, client_user, outsider):
    taken = book(outsider, ny_profile, FIRST.astimezone(UTC) + timedelta(days=7), now=AUTUMN)
    before = (Booking.objects.count(), BookingSeries.objects.count())
    with pytest.raises(SeriesConflicts) as refused:
        _series(client_user, ny_profile)
    assert refused.value.status_code == 409
    assert refused.value.extra["conflicts"] == [
        {"index": 1, "start": taken.start.isoformat(), "code": "slot_unavailable"}
    ]
    assert (Booking.objects.count(), BookingSeries.objects.count()) == before


def test_skip_books_the_rest_and_reports_the_collision(ny_profile, client_user, outsider):
    book(outsider, ny_profile, FIRST.astimezone(UTC) + timedelta(days=7), now=AUTUMN)
    outcome = _series(client_user, ny_profile, on_conflict="skip")
    assert [o.index for o in outcome.booked] == [0, 2, 3]
    assert [(o.index, o.code) for o in outcome.conflicts] == [(1, "slot_unavailable")]
    assert Booking.objects.filter(series=outcome.series).count() == 3


def test_every_occurrence_is_checked_not_only_the_first(ny_profile, client_user):
    """Later occurrences meet a licence that has expired and a day off."""
    Licence.objects.filter(therapist=ny_profile).update(expires_on=date(2025, 11, 5))
    scheduling_services.availability_override_create(
        profile=ny_profile,
        kind="time_off",
        first_date=date(2025, 10, 28),
        last_date=date(2025, 10, 28),
        now=AUTUMN,
    )
    outcome = _series(client_user, ny_profile, count=4, dry_run=True)
    assert [o.code for o in outcome.occurrences] == [
        "",
        "slot_unavailable",
        "",
        "therapist_not_licensed",
    ]


def test_a_dry_run_reports_and_writes_nothing(ny_profile, client_user):
    outcome = _series(client_user, ny_profile, dry_run=True)
    assert outcome.series is None
    assert [o.code for o in outcome.occurrences] == ["", "", "", ""]
    assert not Booking.objects.exists() and not BookingSeries.objects.exists()


def test_the_clients_other_sessions_apply_to_each_occurrence(ny_profile, client_user):
    other = make_therapist(now=AUTUMN)
    # The client's own session elsewhere at the third occurrence's time.
    clash = datetime(2025, 11, 4, 9, tzinfo=NY).astimezone(UTC)  # after the change
    book(client_user, other, clash, now=AUTUMN)
    outcome = _series(client_user, ny_profile, on_conflict="skip")
    assert [(o.index, o.code) for o in outcome.conflicts] == [(2, "client_overlap")]


def test_a_series_is_bounded(ny_profile, client_user):
    with pytest.raises(UnprocessableError):
        _series(client_user, ny_profile, count=13)
