"""``CompiledRead``: a queryset built and compiled once per database, run with each call's values.

The builders below are small reads over the scheduling models shaped like the ones the booking
and slot code compile: session types with their therapist and optional cancellation policy
(``select_related``) and ``Exists`` facts over UUID, str, date and datetime values; a
``values_list`` UNION ALL of bookings and imported busy times; a locking read. Each result is
compared with what the ORM itself gives for the same values.

``insert_rows`` and ``update_row`` (the last section) write as ``Model.save`` and
``QuerySet.update`` would: each row they write is read back with the ORM and compared with its
instance; a refused insert (unique constraint; on PostgreSQL the bookings' exclusion constraint)
raises or, with ``ignore_conflicts``, writes nothing and leaves its instance unsaved.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import django
import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import DateTimeField, Exists, Model, OuterRef, QuerySet, Value
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from api.compiled import (
    CHECKED_DJANGO,
    CompiledRead,
    Rows,
    insert_rows,
    insert_together,
    update_row,
)
from api.models import IdempotencyRecord, Role, User
from scheduling import services as scheduling_services
from scheduling.bookings import services as booking_services
from scheduling.bookings.db import is_overlap_violation
from scheduling.models import (
    Booking,
    BookingNotification,
    BookingStatus,
    BookingTransition,
    CalendarSource,
    CancellationPolicy,
    ExternalBusyInterval,
    ExternalCalendar,
    LateFeeKind,
    Licence,
    SessionType,
    TherapistProfile,
)
from tests.factories import make_user
from tests.scheduling.conftest import NOW, make_booking, make_therapist

pytestmark = pytest.mark.django_db

# Tuesday 3 June 2025, 09:00 in New York: a session on the therapist's first working day.
SESSION_START = datetime(2025, 6, 3, 13, tzinfo=UTC)


def test_the_installed_django_minor_version_is_one_the_module_was_checked_against():
    """``CompiledRead`` reads Django's private query API: on a Django minor version not in
    ``CHECKED_DJANGO`` this fails until someone has read those names in the new version, run
    this module's tests and added it (docs/adr/0004-compiled-statements.md)."""
    assert django.VERSION[:2] in CHECKED_DJANGO, (
        f"api/compiled.py was not checked against Django {django.get_version()}"
    )


# --- Builders ---------------------------------------------------------------------------------


def _session_types(
    *, therapist_id: uuid.UUID, jurisdiction: str, licence_day: date, booked_from: datetime
) -> QuerySet[SessionType]:
    """A therapist's active session types, their profile and policy loaded, with whether the
    therapist is licensed in ``jurisdiction`` on ``licence_day`` and has a session starting at
    ``booked_from`` or later."""
    licensed = Licence.objects.filter(
        therapist=OuterRef("therapist_id"),
        jurisdiction=jurisdiction,
        expires_on__gte=licence_day,
        verified_at__isnull=False,
    )
    booked = Booking.objects.filter(therapist=OuterRef("therapist_id"), start__gte=booked_from)
    return (
        SessionType.objects.select_related("therapist__cancellation_policy")
        .filter(therapist_id=therapist_id, is_active=True)
        .annotate(licensed=Exists(licensed), booked=Exists(booked))
        .order_by("name", "pk")
    )


def _busy(
    *, therapist_id: uuid.UUID, start: datetime, end: datetime
) -> QuerySet[Booking, tuple[datetime, datetime, datetime | None]]:
    """Bookings (blocked range and start) and imported busy times (no start) touching
    ``[start, end)``, in one UNION ALL query."""
    bookings = Booking.objects.filter(
        therapist_id=therapist_id, blocked_start__lt=end, blocked_end__gt=start
    ).values_list("blocked_start", "blocked_end", "start")
    imported = (
        ExternalBusyInterval.objects.filter(therapist_id=therapist_id, start__lt=end, end__gt=start)
        .annotate(session_start=Value(None, output_field=DateTimeField()))
        .values_list("start", "end", "session_start")
    )
    return bookings.union(imported, all=True)


def _therapist_locked(*, therapist_id: uuid.UUID) -> QuerySet[TherapistProfile]:
    return TherapistProfile.objects.select_for_update().filter(pk=therapist_id)


def _values(therapist: TherapistProfile, **changes: Any) -> dict[str, Any]:
    """``_session_types``' values for ``therapist``: their licence's jurisdiction, NOW's day and
    sessions from NOW on, with ``changes``."""
    return {
        "therapist_id": therapist.pk,
        "jurisdiction": therapist.licences.get().jurisdiction,
        "licence_day": NOW.date(),
        "booked_from": NOW,
    } | changes


def _loaded(obj: object) -> dict[str, Any]:
    """An instance's loaded values and annotations, without its ORM state."""
    return {name: value for name, value in vars(obj).items() if name != "_state"}


# --- Fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def with_policy(therapist: User, client_user: User) -> TherapistProfile:
    """A New York therapist (licensed in US-NY) with two session types, a cancellation policy
    and one session, on SESSION_START."""
    profile = make_therapist(user=therapist)
    scheduling_services.session_type_create(
        profile=profile,
        name="Couples session",
        duration_minutes=80,
        price_minor=18000,
        currency="USD",
        delivery="video",
        now=NOW,
    )
    booking_services.cancellation_policy_set(
        therapist=profile,
        free_until_hours=48,
        late_fee_kind=LateFeeKind.PERCENT,
        late_fee_value=50,
        now=NOW,
    )
    make_booking(therapist=profile, client=client_user, start=SESSION_START)
    return profile


@pytest.fixture
def without_policy(other_therapist: User) -> TherapistProfile:
    """A London therapist (licensed in GB) with one session type, no cancellation policy row
    and no sessions."""
    return make_therapist(user=other_therapist, time_zone="Europe/London", jurisdiction="GB")


# --- Model instances --------------------------------------------------------------------------


def test_list_gives_the_instances_the_queryset_gives(with_policy):
    values = _values(with_policy)

    compiled = CompiledRead(_session_types).list(**values)
    expected = list(_session_types(**values))

    assert [t.name for t in compiled] == ["Couples session", "Individual session"]
    assert [_loaded(t) for t in compiled] == [_loaded(t) for t in expected]
    assert [_loaded(t.therapist) for t in compiled] == [_loaded(t.therapist) for t in expected]
    assert [_loaded(t.therapist.cancellation_policy) for t in compiled] == [
        _loaded(t.therapist.cancellation_policy) for t in expected
    ]


def test_instances_come_with_their_relations_and_annotations_in_one_query(
    with_policy, django_assert_num_queries
):
    read, values = CompiledRead(_session_types), _values(with_policy)

    with django_assert_num_queries(1):
        session_type = read.list(**values)[0]
        policy = session_type.therapist.cancellation_policy
        facts = (session_type.licensed, session_type.booked)

    assert session_type.therapist == with_policy
    assert (policy.free_until_hours, policy.late_fee_kind, policy.late_fee_value) == (
        48,
        LateFeeKind.PERCENT,
        50,
    )
    assert facts == (True, True)
    assert all(type(fact) is bool for fact in facts)


def test_a_missing_optional_relation_is_loaded_as_absent(without_policy, django_assert_num_queries):
    read, values = CompiledRead(_session_types), _values(without_policy)

    with django_assert_num_queries(1):
        (session_type,) = read.list(**values)
        with pytest.raises(CancellationPolicy.DoesNotExist):
            session_type.therapist.cancellation_policy  # noqa: B018

    (expected,) = _session_types(**values)
    assert _loaded(session_type) == _loaded(expected)
    assert _loaded(session_type.therapist) == _loaded(expected.therapist)


def test_each_call_runs_with_its_own_values(with_policy, without_policy):
    read = CompiledRead(_session_types)

    mine = read.list(**_values(with_policy))
    theirs = read.list(**_values(without_policy))

    assert {t.therapist_id for t in mine} == {with_policy.pk}
    assert [(t.therapist_id, t.name) for t in theirs] == [(without_policy.pk, "Individual session")]
    assert [_loaded(t) for t in theirs] == [
        _loaded(t) for t in _session_types(**_values(without_policy))
    ]


@pytest.mark.parametrize(
    ("changes", "facts"),
    [
        ({}, (True, True)),
        ({"jurisdiction": "US-CA"}, (False, True)),
        ({"licence_day": date(2030, 1, 2)}, (False, True)),
        ({"booked_from": SESSION_START + timedelta(seconds=1)}, (True, False)),
    ],
    ids=["as-stored", "other-jurisdiction", "after-expiry", "after-the-session"],
)
def test_the_values_in_sub_queries_are_each_calls_own(with_policy, changes, facts):
    values = _values(with_policy, **changes)

    rows = CompiledRead(_session_types).list(**values)

    assert {(t.licensed, t.booked) for t in rows} == {facts}
    assert [(t.pk, t.licensed, t.booked) for t in rows] == [
        (t.pk, t.licensed, t.booked) for t in _session_types(**values)
    ]


def test_first_is_the_first_row(with_policy):
    session_type = CompiledRead(_session_types).first(**_values(with_policy))

    assert session_type is not None
    assert session_type.name == "Couples session"


def test_first_is_none_when_nothing_matches(with_policy):
    read = CompiledRead(_session_types)

    assert read.first(**_values(with_policy, therapist_id=uuid.uuid4())) is None


# --- values_list tuples -----------------------------------------------------------------------


def test_a_values_list_union_gives_the_tuples_the_queryset_gives(with_policy):
    calendar = ExternalCalendar.objects.create(
        therapist=with_policy,
        name="Personal",
        source=CalendarSource.UPLOAD,
        next_sync_at=NOW,
        created_at=NOW,
    )
    imported = ExternalBusyInterval.objects.create(
        calendar=calendar,
        therapist=with_policy,
        start=SESSION_START + timedelta(hours=3),
        end=SESSION_START + timedelta(hours=4),
    )
    booking = Booking.objects.get(therapist=with_policy)
    values = {"therapist_id": with_policy.pk, "start": NOW, "end": NOW + timedelta(days=7)}

    rows = CompiledRead(_busy).list(**values)

    assert sorted(rows, key=lambda row: row[0]) == [
        (booking.blocked_start, booking.blocked_end, booking.start),
        (imported.start, imported.end, None),
    ]
    assert sorted(rows, key=lambda row: row[0]) == sorted(_busy(**values), key=lambda r: r[0])
    assert {type(row) for row in rows} == {tuple}


def test_values_list_datetimes_are_aware_utc(with_policy):
    values = {"therapist_id": with_policy.pk, "start": NOW, "end": NOW + timedelta(days=7)}

    ((blocked_start, blocked_end, start),) = CompiledRead(_busy).list(**values)

    assert [d.utcoffset() for d in (blocked_start, blocked_end, start)] == [timedelta(0)] * 3


def test_a_values_list_union_runs_with_each_calls_values(with_policy):
    read = CompiledRead(_busy)
    week = {"therapist_id": with_policy.pk, "start": NOW, "end": NOW + timedelta(days=7)}

    assert len(read.list(**week)) == 1
    assert read.list(**week | {"start": SESSION_START + timedelta(days=1)}) == []
    assert read.list(**week | {"therapist_id": uuid.uuid4()}) == []


# --- What a builder may do with its parameters ------------------------------------------------


def test_a_parameter_used_only_through_a_computed_value_is_refused(with_policy):
    def build(*, start: datetime) -> QuerySet[Booking]:
        return Booking.objects.filter(start__lt=start + timedelta(minutes=50))

    read = CompiledRead(build)

    with pytest.raises(ValueError, match="parameter 'start' is not a value of the query"):
        read.list(start=SESSION_START)


def test_a_parameter_used_only_to_choose_the_query_is_refused(with_policy):
    def build(*, therapist_id: uuid.UUID, order: str) -> QuerySet[Booking]:
        bookings = Booking.objects.filter(therapist_id=therapist_id)
        return bookings.order_by("-start" if order == "latest" else "start")

    read = CompiledRead(build)

    with pytest.raises(ValueError, match="parameter 'order' is not a value of the query"):
        read.list(therapist_id=with_policy.pk, order="latest")


def test_a_parameter_used_also_through_a_computed_value_is_refused(with_policy):
    def build(*, start: datetime) -> QuerySet[Booking]:
        return Booking.objects.filter(start__gte=start, end__lte=start + timedelta(hours=1))

    read = CompiledRead(build)

    with pytest.raises(ValueError, match="build changes with its values"):
        read.list(start=SESSION_START)


def test_a_value_of_another_type_than_its_parameters_is_a_type_error(with_policy):
    read = CompiledRead(_therapist_locked)

    with pytest.raises(TypeError, match="therapist_id must be a UUID"):
        read.list(therapist_id=str(with_policy.pk))


def test_prefetch_related_is_refused(with_policy):
    def build(*, therapist_id: uuid.UUID) -> QuerySet[TherapistProfile]:
        return TherapistProfile.objects.filter(pk=therapist_id).prefetch_related("licences")

    with pytest.raises(TypeError, match="prefetch_related"):
        CompiledRead(build).list(therapist_id=with_policy.pk)


def test_a_builder_whose_query_changes_with_its_values_is_refused(with_policy):
    def build(*, day: date) -> QuerySet[Licence]:
        licences = Licence.objects.filter(expires_on__gte=day)
        # Two sets of stand-ins, each a day apart: one odd day and one even.
        return licences.order_by("expires_on" if day.toordinal() % 2 else "-expires_on")

    read = CompiledRead(build)

    with pytest.raises(ValueError, match="build changes with its values"):
        read.list(day=NOW.date())


def test_keyword_only_parameters_with_a_default_keep_it(with_policy):
    def build(
        *, therapist_id: uuid.UUID, exclude_ids: Collection[uuid.UUID] = ()
    ) -> QuerySet[SessionType]:
        types = SessionType.objects.filter(therapist_id=therapist_id).order_by("name")
        return types.exclude(pk__in=list(exclude_ids)) if exclude_ids else types

    read = CompiledRead(build)
    couples = SessionType.objects.get(therapist=with_policy, name="Couples session")

    assert [t.name for t in read.list(therapist_id=with_policy.pk)] == [
        "Couples session",
        "Individual session",
    ]
    with pytest.raises(TypeError):
        read.list(therapist_id=with_policy.pk, exclude_ids=[couples.pk])


@pytest.mark.parametrize(
    "values",
    [
        {"therapist_id": uuid.uuid4(), "jurisdiction": "US-NY", "licence_day": NOW.date()},
        {
            "therapist_id": uuid.uuid4(),
            "jurisdiction": "US-NY",
            "licence_day": NOW.date(),
            "booked_from": NOW,
            "status": "confirmed",
        },
        {},
    ],
    ids=["one-missing", "one-extra", "none"],
)
def test_calling_without_exactly_the_parameters_is_a_type_error(values, django_assert_num_queries):
    read = CompiledRead(_session_types)

    with django_assert_num_queries(0), pytest.raises(TypeError, match="give exactly"):
        read.list(**values)


# --- Locking reads ----------------------------------------------------------------------------


def test_a_locking_read_runs_inside_a_transaction(with_policy):
    read = CompiledRead(_therapist_locked)

    with transaction.atomic():
        assert read.list(therapist_id=with_policy.pk) == [with_policy]


@pytest.mark.django_db(transaction=True)
def test_a_locking_read_outside_a_transaction_is_refused_even_once_compiled(therapist):
    profile = make_therapist(user=therapist)
    read = CompiledRead(_therapist_locked)
    with transaction.atomic():
        read.list(therapist_id=profile.pk)  # compiled inside one

    with pytest.raises(TransactionManagementError):
        read.list(therapist_id=profile.pk)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_locking_read_outside_a_transaction_is_refused_like_the_orm_refuses_it(therapist):
    profile = make_therapist(user=therapist)

    with pytest.raises(TransactionManagementError):
        list(_therapist_locked(therapist_id=profile.pk))
    with pytest.raises(TransactionManagementError):
        CompiledRead(_therapist_locked).list(therapist_id=profile.pk)


# --- insert_rows and update_row ---------------------------------------------------------------


def _record(key: str = "key-1", *, request_hash: str = "0" * 64) -> IdempotencyRecord:
    """An unsaved, in-progress idempotency record of one actor (the ``_claim`` of a POST)."""
    return IdempotencyRecord(
        actor="actor-1",
        key=key,
        method="POST",
        path="/api/v1/bookings",
        request_hash=request_hash,
        created_at=NOW,
    )


def _unsaved_booking(booking: Booking, *, start: datetime) -> Booking:
    """An unsaved copy of ``booking`` (same parties, length and status) moved to ``start``."""
    shift = start - booking.start
    return Booking(
        therapist=booking.therapist,
        client=booking.client,
        session_type=booking.session_type,
        start=start,
        end=booking.end + shift,
        blocked_start=booking.blocked_start + shift,
        blocked_end=booking.blocked_end + shift,
        status=booking.status,
        created_at=NOW,
        updated_at=NOW,
    )


def _row(obj: Model, *, leaving_out: Collection[str] = ()) -> dict[str, Any]:
    """An instance's column values, by attribute name."""
    fields = obj._meta.concrete_fields
    return {f.attname: getattr(obj, f.attname) for f in fields if f.attname not in leaving_out}


def _transition_of(booking: Booking, client: User) -> BookingTransition:
    """The client's booking of ``booking`` (a free session, so confirmed at once)."""
    return BookingTransition(
        booking=booking,
        from_status="",
        to_status=BookingStatus.CONFIRMED,
        actor=client,
        reason="booked_free",
        occurred_at=NOW,
    )


@pytest.fixture
def booking(therapist: User, client_user: User) -> Booking:
    """The therapist persona's confirmed session with the client persona, on SESSION_START."""
    profile = make_therapist(user=therapist)
    return make_booking(therapist=profile, client=client_user, start=SESSION_START)


def test_insert_rows_of_one_instance_takes_its_key_from_returning_and_marks_it_saved(
    booking, client_user, django_assert_num_queries
):
    transition = _transition_of(booking, client_user)

    with django_assert_num_queries(1):
        assert insert_rows([transition]) == 1

    assert list(BookingTransition.objects.values_list("pk", flat=True)) == [transition.pk]
    assert (transition._state.adding, transition._state.db) == (False, "default")
    assert _row(BookingTransition.objects.get(pk=transition.pk)) == _row(transition)


def test_insert_rows_puts_several_instances_in_with_one_statement(django_assert_num_queries):
    records = [_record(f"key-{n}", request_hash=f"{n}" * 64) for n in range(3)]

    with django_assert_num_queries(1):
        assert insert_rows(records) == 3

    stored = IdempotencyRecord.objects.order_by("key")
    assert [_row(r, leaving_out={"id"}) for r in stored] == [
        _row(r, leaving_out={"id"}) for r in records
    ]


def test_insert_rows_stores_the_primary_key_a_booking_was_made_with(booking):
    """No field of the project's models computes its value at save time; a Booking's UUID key
    is its field default, made with the instance, and that key is the row's."""
    later = _unsaved_booking(booking, start=SESSION_START + timedelta(hours=2))
    made_with = later.pk

    assert insert_rows([later]) == 1

    assert later.pk == made_with
    assert _row(Booking.objects.get(pk=made_with)) == _row(later)


def test_insert_rows_binds_what_each_fields_pre_save_gives(monkeypatch):
    """``auto_now_add`` is turned on for this test only (no model of the project has one): as in
    ``Model.save``, the field's ``pre_save`` replaces the instance's value with the insert's time,
    and that is what is stored."""
    monkeypatch.setattr(IdempotencyRecord._meta.get_field("created_at"), "auto_now_add", True)
    record = _record()  # created_at=NOW, a day in 2025
    before = timezone.now()

    insert_rows([record])

    assert before <= record.created_at <= timezone.now()
    assert IdempotencyRecord.objects.get().created_at == record.created_at


def test_insert_rows_of_a_taken_unique_key_raises_integrity_error():
    first = _record()
    insert_rows([first])
    again = _record(request_hash="1" * 64)

    with pytest.raises(IntegrityError), transaction.atomic():
        insert_rows([again])

    assert again._state.adding is True
    assert list(IdempotencyRecord.objects.values_list("pk", "request_hash")) == [
        (first.pk, first.request_hash)
    ]


def test_insert_rows_with_ignore_conflicts_skips_a_taken_unique_key():
    first = _record()
    insert_rows([first])
    again = _record(request_hash="1" * 64)

    assert insert_rows([again], ignore_conflicts=True) == 0

    assert (again.pk, again._state.adding) == (None, True)
    assert list(IdempotencyRecord.objects.values_list("pk", "request_hash")) == [
        (first.pk, first.request_hash)
    ]


def test_insert_rows_with_ignore_conflicts_counts_the_rows_that_went_in():
    """Of several instances, it cannot tell which went in: none is marked saved."""
    insert_rows([_record("key-1")])
    records = [_record("key-2"), _record("key-1", request_hash="1" * 64)]

    assert insert_rows(records, ignore_conflicts=True) == 1

    assert [r._state.adding for r in records] == [True, True]
    assert list(IdempotencyRecord.objects.order_by("key").values_list("key", "request_hash")) == [
        ("key-1", "0" * 64),
        ("key-2", "0" * 64),
    ]


@pytest.mark.postgres
def test_insert_rows_of_an_overlapping_booking_is_refused_by_the_exclusion_constraint(booking):
    overlapping = _unsaved_booking(booking, start=booking.start + timedelta(minutes=49))

    with pytest.raises(IntegrityError) as refused, transaction.atomic():
        insert_rows([overlapping])

    assert is_overlap_violation(refused.value)
    assert overlapping._state.adding is True
    assert list(Booking.objects.values_list("pk", flat=True)) == [booking.pk]


@pytest.mark.postgres
def test_insert_rows_with_ignore_conflicts_skips_an_overlapping_booking(booking):
    overlapping = _unsaved_booking(booking, start=booking.start + timedelta(minutes=49))

    assert insert_rows([overlapping], ignore_conflicts=True) == 0

    assert overlapping._state.adding is True
    assert list(Booking.objects.values_list("pk", flat=True)) == [booking.pk]


def test_update_row_writes_the_given_fields_to_the_row_and_the_instance(
    booking, django_assert_num_queries
):
    later = NOW + timedelta(hours=1)

    with django_assert_num_queries(1):
        changed = update_row(booking, status=BookingStatus.CANCELLED, updated_at=later)

    assert changed == 1
    assert (booking.status, booking.updated_at) == (BookingStatus.CANCELLED, later)
    stored = Booking.objects.get(pk=booking.pk)
    assert (stored.status, stored.updated_at) == (BookingStatus.CANCELLED, later)


def test_update_row_sets_a_foreign_key_by_its_attname_to_a_key(booking):
    """``client_id=<key>`` as ``Model.save`` would store it; the instance's cached related
    object goes with the old key."""
    other = make_user(role=Role.CLIENT)
    assert booking.client.pk != other.pk  # the related object is cached now

    assert update_row(booking, client_id=other.pk) == 1

    assert booking.client_id == other.pk
    assert booking.client == other
    assert Booking.objects.get(pk=booking.pk).client_id == other.pk


def test_update_row_leaves_the_rows_other_fields_and_other_rows_alone(booking):
    other = make_booking(
        therapist=booking.therapist,
        client=booking.client,
        start=SESSION_START + timedelta(hours=2),
    )
    booking.sequence = 7  # changed on the instance only

    update_row(booking, status=BookingStatus.CANCELLED)

    assert _row(Booking.objects.get(pk=booking.pk)) == _row(booking) | {"sequence": 0}
    assert _row(Booking.objects.get(pk=other.pk)) == _row(other)


def test_update_row_of_an_instance_whose_row_is_gone_changes_nothing():
    """As when the response is stored for a record that was removed meanwhile."""
    record = _record()
    insert_rows([record])
    IdempotencyRecord.objects.filter(pk=record.pk).delete()

    assert update_row(record, status_code=201, response_body="sealed") == 0

    assert not IdempotencyRecord.objects.exists()


def test_update_row_binds_a_datetime_as_the_orm_stores_it(booking):
    """An aware datetime in another zone is stored as the ORM stores it (the ORM's own filter
    finds it) and reads back aware, in UTC."""
    later = datetime(2025, 6, 2, 10, tzinfo=ZoneInfo("America/New_York"))

    update_row(booking, updated_at=later)

    stored = Booking.objects.get(pk=booking.pk)
    assert Booking.objects.filter(pk=booking.pk, updated_at=later).exists()
    assert stored.updated_at == later
    assert stored.updated_at.utcoffset() == timedelta(0)


def test_update_row_binds_json_as_the_orm_stores_it(booking):
    profile = booking.therapist
    card = {"languages": ["en", "es"], "session_types": [{"name": "Individual session"}]}

    update_row(profile, card=card)

    profile.refresh_from_db()
    assert profile.card == card


def test_insert_rows_refuses_a_db_default_left_unset():
    from audit.models import AuditCheckpoint

    checkpoint = AuditCheckpoint()

    with pytest.raises(TypeError, match="db_default"):
        insert_rows([checkpoint])


def test_update_row_needs_fields_to_set(booking):
    with pytest.raises(TypeError, match="give the fields"):
        update_row(booking)


# --- insert_together ------------------------------------------------------------------------


def _parts(booking: Booking, client_user: User) -> tuple[Booking, list[Rows]]:
    """A new booking two hours after ``booking``, its transition and a duplicate-free email."""
    later = _unsaved_booking(booking, start=SESSION_START + timedelta(hours=2))
    transition = _transition_of(later, client_user)
    email = BookingNotification(
        booking=later, recipient=client_user, kind="booked", dedupe_key="seq:0", created_at=NOW
    )
    return later, [Rows([later]), Rows([transition]), Rows([email], ignore_conflicts=True)]


def test_insert_together_writes_every_part(booking, client_user, django_assert_num_queries):
    later, parts = _parts(booking, client_user)
    statements = 1 if connection.vendor == "postgresql" else len(parts)

    with django_assert_num_queries(statements):
        insert_together(*parts)

    assert _row(Booking.objects.get(pk=later.pk)) == _row(later)
    assert BookingTransition.objects.filter(booking=later).count() == 1
    assert BookingNotification.objects.filter(booking=later).count() == 1
    assert later._state.adding is False  # its key was made in Python


def test_insert_together_skips_a_conflict_only_in_a_part_that_ignores_them(booking, client_user):
    later, parts = _parts(booking, client_user)
    insert_together(*parts)
    again = BookingNotification(
        booking=later, recipient=client_user, kind="booked", dedupe_key="seq:0", created_at=NOW
    )

    insert_together(Rows([again], ignore_conflicts=True))

    assert BookingNotification.objects.filter(booking=later).count() == 1
    with pytest.raises(IntegrityError), transaction.atomic():
        insert_together(Rows([again]))


@pytest.mark.postgres
def test_insert_together_writes_nothing_when_one_part_is_refused(booking, client_user):
    later, parts = _parts(booking, client_user)
    overlapping = _unsaved_booking(booking, start=SESSION_START + timedelta(minutes=30))

    with pytest.raises(IntegrityError) as refused, transaction.atomic():
        insert_together(*parts, Rows([overlapping]))

    assert is_overlap_violation(refused.value)
    assert not Booking.objects.filter(pk__in=[later.pk, overlapping.pk]).exists()
    assert not BookingTransition.objects.exists()
    assert not BookingNotification.objects.exists()
