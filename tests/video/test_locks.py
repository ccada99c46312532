"""``video.locks``: the rows each video write locks, read by statements compiled once
(``api.compiled.CompiledRead``), give what the ORM's querysets give, relations loaded, in one
locking statement; and ``video.intervals.interval_open`` opens at most one interval of a kind
in one statement."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.video.signalling_support import Setup, make_room
from video import locks
from video.intervals import interval_open, intervals_close
from video.models import AttendanceInterval, AttendanceKind, IntervalEnd

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(db: None) -> Setup:
    return make_room()


def _one_locking_statement(read: Any) -> Any:
    """``read()`` in a transaction: its result, having run one statement that locks."""
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        result = read()
    statements = [q["sql"] for q in queries.captured_queries if q["sql"] != "BEGIN"]
    assert len(statements) == 1, statements
    if connection.vendor == "postgresql":
        assert "FOR NO KEY UPDATE OF" in statements[0]
    return result


def test_a_room_comes_with_its_booking_and_therapist(
    setup: Setup, django_assert_num_queries: Any
) -> None:
    room = _one_locking_statement(lambda: locks.room_lock(room_id=setup.room.pk))
    expected = locks._room(room_id=setup.room.pk).get()
    assert (room.pk, room.round, room.mode) == (expected.pk, expected.round, expected.mode)
    with django_assert_num_queries(0):
        assert room.booking.therapist.user_id == setup.therapist.user.pk


def test_the_room_of_a_participant_and_of_a_booking(setup: Setup) -> None:
    by_participant = _one_locking_statement(
        lambda: locks.room_lock_of_participant(participant_id=setup.client.participant.pk)
    )
    by_booking = _one_locking_statement(
        lambda: locks.room_lock_of_booking(booking_id=setup.room.booking_id)
    )
    assert by_participant.pk == by_booking.pk == setup.room.pk


def test_participants_in_key_order_with_their_users(
    setup: Setup, django_assert_num_queries: Any
) -> None:
    people = _one_locking_statement(lambda: locks.participants_lock(room_id=setup.room.pk))
    assert [p.pk for p in people] == sorted(
        [setup.therapist.participant.pk, setup.client.participant.pk]
    )
    assert people == list(locks._participants(room_id=setup.room.pk))
    with django_assert_num_queries(0):
        assert {p.user.pk for p in people} == {setup.therapist.user.pk, setup.client.user.pk}


def test_a_booking_comes_with_its_therapist_and_session_type(
    setup: Setup, django_assert_num_queries: Any
) -> None:
    booking = _one_locking_statement(lambda: locks.booking_lock(booking_id=setup.room.booking_id))
    assert booking.pk == setup.room.booking_id
    with django_assert_num_queries(0):
        assert booking.therapist.user_id == setup.therapist.user.pk
        assert booking.session_type.delivery == "video"


def test_each_call_reads_its_own_rows_and_none_when_there_are_none(setup: Setup) -> None:
    other = make_room()
    with transaction.atomic():
        assert locks.room_lock(room_id=other.room.pk).pk == other.room.pk
        assert locks.room_lock(room_id=setup.room.pk).pk == setup.room.pk
        assert locks.room_lock(room_id=uuid.uuid4()) is None
        assert locks.room_lock_of_participant(participant_id=uuid.uuid4()) is None
        assert locks.room_lock_of_booking(booking_id=uuid.uuid4()) is None
        assert locks.booking_lock(booking_id=uuid.uuid4()) is None
        assert locks.participants_lock(room_id=uuid.uuid4()) == []


def test_an_interval_kind_opens_once_until_it_is_closed(setup: Setup) -> None:
    me, now = setup.client.participant, timezone.now()
    with CaptureQueriesContext(connection) as queries:
        assert interval_open(participant=me, kind=AttendanceKind.PRESENT, now=now)
    assert len(queries.captured_queries) == 1  # no read before the INSERT
    assert not interval_open(participant=me, kind=AttendanceKind.PRESENT, now=now)
    assert interval_open(participant=me, kind=AttendanceKind.IN_CALL, now=now)
    intervals_close(participant=me, reason=IntervalEnd.LEFT, now=now)
    assert interval_open(participant=me, kind=AttendanceKind.PRESENT, now=now)
    open_ = AttendanceInterval.objects.filter(participant=me, ended_at__isnull=True)
    assert [i.kind for i in open_] == [AttendanceKind.PRESENT]
    assert AttendanceInterval.objects.filter(participant=me).count() == 3
