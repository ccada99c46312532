"""The events INSERT (``audit.db.insert_events``): what it returns, how it fails, transactions.

On PostgreSQL it runs on a psycopg cursor kept per connection, bound client-side or, where
prepared statements are allowed (``DATABASE_PREPARED_STATEMENTS``), prepared: both protocols
must behave exactly as Django's own cursor does.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models import QuerySet
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent, Outcome
from audit.services import EventDraft, Origin, audit_record_many
from tests.audit.faults import audit_inserts_fail

Events = Callable[[], QuerySet[AuditEvent]]
PATIENT = uuid.UUID("6f1c0e4e-2a51-4d8e-9d8f-0b9a4d1c2e3f")
ACTOR = uuid.UUID("0d6b1c53-8d0e-4f43-8a3b-5f6a7c8d9e0f")
ORIGIN = Origin(actor_id=ACTOR, actor_role="therapist", source_ip="192.0.2.7", request_id="r-1")


def _drafts(count: int) -> list[EventDraft]:
    return [
        EventDraft(
            action="read",
            resource_type="scheduling.booking",
            resource_id=f"b-{n}",
            patient_id=PATIENT if n % 2 else None,
            details={"route": "api/v1/bookings/<uuid:pk>", "ids": [n, "x"], "nested": {"n": n}},
        )
        for n in range(count)
    ]


@pytest.fixture(params=["client-side", "prepared"])
def protocol(request: pytest.FixtureRequest, transactional_db: None) -> Iterator[str]:
    """A fresh PostgreSQL connection, with prepared statements allowed or not."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's protocols")
    options = connection.settings_dict["OPTIONS"]
    saved = dict(options)
    options.pop("prepare_threshold", None)
    options.pop("server_side_binding", None)
    if request.param == "prepared":
        # As DATABASE_PREPARED_STATEMENTS=1 binds, prepared from the first run (the setting
        # waits for psycopg's default five).
        options.update(server_side_binding=True, prepare_threshold=0)
    _binding_changed()
    yield request.param
    options.clear()
    options.update(saved)
    _binding_changed()


def _binding_changed() -> None:
    """A new connection, and Django's cached view of the binding (its query log reads it)."""
    connection.close()
    connection.features.__dict__.pop("uses_server_side_binding", None)


def _prepared_inserts() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ["INSERT INTO audit_event%"],
        )
        return int(cursor.fetchone()[0])


def _mark() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def test_each_row_comes_back_with_its_id_and_database_time(new_events: Events) -> None:
    returned = audit_record_many(drafts=_drafts(3), origin=ORIGIN)
    stored = list(new_events())
    assert [pk for pk, _ in returned] == [event.pk for event in stored]
    assert [at for _, at in returned] == [event.occurred_at for event in stored]
    assert all(at.tzinfo == UTC for _, at in returned)


@pytest.mark.postgres
def test_both_protocols_store_and_return_the_same(protocol: str) -> None:
    mark = _mark()
    single = audit_record_many(drafts=_drafts(1), origin=ORIGIN)
    page = audit_record_many(drafts=_drafts(10), origin=ORIGIN)
    again = audit_record_many(drafts=_drafts(1), origin=ORIGIN)
    stored = list(AuditEvent.objects.filter(id__gt=mark).order_by("id"))
    returned = single + page + again
    assert [(pk, at) for pk, at in returned] == [(e.pk, e.occurred_at) for e in stored]
    assert all(type(pk) is int and at.tzinfo == UTC for pk, at in returned)
    second = stored[2]  # the page's second row: a client named, nested details
    assert (second.actor_id, second.patient_id, second.session_id) == (ACTOR, PATIENT, None)
    assert (second.actor_role, second.source_ip) == ("therapist", "192.0.2.7")
    assert second.request_id == "r-1"
    assert (second.action, second.resource_id, second.outcome) == ("read", "b-1", Outcome.ALLOWED)
    assert second.details == {
        "route": "api/v1/bookings/<uuid:pk>",
        "ids": [1, "x"],
        "nested": {"n": 1},
    }
    assert stored[1].patient_id is None
    # Prepared: each shape (one row, ten rows) parsed and planned once for the connection.
    assert _prepared_inserts() == (2 if protocol == "prepared" else 0)


@pytest.mark.postgres
def test_a_new_connection_gets_a_cursor_of_its_own(protocol: str) -> None:
    mark = _mark()
    audit_record_many(drafts=_drafts(1), origin=ORIGIN)
    connection.close()
    audit_record_many(drafts=_drafts(1), origin=ORIGIN)
    assert AuditEvent.objects.filter(id__gt=mark).count() == 2
    assert _prepared_inserts() == (1 if protocol == "prepared" else 0)


@pytest.mark.postgres
def test_a_refused_insert_raises_djangos_error(protocol: str) -> None:
    mark = _mark()
    with audit_inserts_fail(), pytest.raises(DatabaseError, match="injected by the test"):
        audit_record_many(drafts=_drafts(1), origin=ORIGIN)
    audit_record_many(drafts=_drafts(1), origin=ORIGIN)  # the cursor is still usable
    assert AuditEvent.objects.filter(id__gt=mark).count() == 1


@pytest.mark.postgres
def test_the_insert_belongs_to_the_callers_transaction(protocol: str) -> None:
    mark = _mark()
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_record_many(drafts=_drafts(2), origin=ORIGIN)
        raise RuntimeError("the change fails")
    assert not AuditEvent.objects.filter(id__gt=mark).exists()
    with transaction.atomic():
        audit_record_many(drafts=_drafts(1), origin=ORIGIN)
        with transaction.atomic():  # a savepoint
            audit_record_many(drafts=_drafts(1), origin=ORIGIN)
    first, second = AuditEvent.objects.filter(id__gt=mark).order_by("id")
    assert first.txid == second.txid


@pytest.mark.postgres
def test_after_an_error_in_a_transaction_django_refuses_the_insert(protocol: str) -> None:
    mark = _mark()
    with audit_inserts_fail(), transaction.atomic():
        with pytest.raises(DatabaseError), transaction.atomic(savepoint=False):
            audit_record_many(drafts=_drafts(1), origin=ORIGIN)
        with pytest.raises(TransactionManagementError):  # Django's check, before the database
            audit_record_many(drafts=_drafts(1), origin=ORIGIN)
    assert not AuditEvent.objects.filter(id__gt=mark).exists()


@pytest.mark.postgres
def test_execute_wrappers_and_the_query_log_see_the_insert(protocol: str) -> None:
    seen: list[str] = []

    def spy(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        audit_record_many(drafts=_drafts(1), origin=ORIGIN)
    with CaptureQueriesContext(connection) as queries:
        audit_record_many(drafts=_drafts(1), origin=ORIGIN)
    assert [sql.split(" (")[0] for sql in seen] == ["INSERT INTO audit_event"]
    assert [q["sql"].split(" (")[0] for q in queries] == ["INSERT INTO audit_event"]
