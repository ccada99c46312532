"""AUD-08, AUD-09: the database itself refuses to change or remove audit rows."""

from __future__ import annotations

import secrets

import pytest
from django.db import DatabaseError, connection, transaction

from audit.chain import audit_checkpoint_create
from audit.db import AUDIT_TABLES, app_role_statements
from audit.models import AuditCheckpoint, AuditEvent, AuditSeal, ChangeRecord
from audit.services import audit_record

pytestmark = pytest.mark.django_db


def _refused(statement: str, *, role: str | None = None) -> str:
    """Run ``statement`` (as ``role``), expect the database to refuse it; return its message."""
    with pytest.raises(DatabaseError) as refused, transaction.atomic():
        with connection.cursor() as cursor:
            if role is not None:
                cursor.execute(f"SET LOCAL ROLE {role}")
            cursor.execute(statement)
    return str(refused.value)


@pytest.fixture
def one_of_each() -> None:
    audit_record(action="test.append_only")
    audit_checkpoint_create()  # seals the event and signs the head
    ChangeRecord.objects.create(table_name="t", row_pk="1", operation="update", fields=["a"])


@pytest.mark.usefixtures("one_of_each")
@pytest.mark.parametrize("table", AUDIT_TABLES)
def test_aud_08_raw_update_and_delete_are_refused_on_every_audit_table(table: str) -> None:
    column = {"audit_seal": "hash", "audit_checkpoint": "hash", "audit_change": "row_pk"}
    statement = f"UPDATE {table} SET {column.get(table, 'action')} = 'x'"  # noqa: S608
    assert "append-only" in _refused(statement)
    assert "append-only" in _refused(f"DELETE FROM {table}")  # noqa: S608


@pytest.mark.usefixtures("one_of_each")
def test_aud_08_orm_update_and_delete_are_refused_too() -> None:
    for model in (AuditEvent, AuditSeal, AuditCheckpoint, ChangeRecord):
        with pytest.raises(DatabaseError), transaction.atomic():
            model.objects.all().delete()
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.update(action="rewritten")
    assert not AuditEvent.objects.filter(action="rewritten").exists()


@pytest.mark.postgres
@pytest.mark.usefixtures("one_of_each")
@pytest.mark.parametrize("table", AUDIT_TABLES)
def test_aud_08_truncate_is_refused_even_for_the_owner(table: str) -> None:
    with connection.cursor() as cursor:  # run the foreign-key checks the test's inserts queued
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    assert "append-only" in _refused(f"TRUNCATE {table} CASCADE")


@pytest.mark.postgres
@pytest.mark.usefixtures("one_of_each")
def test_aud_08_app_role_without_ownership_cannot_touch_the_trail() -> None:
    """The documented deployment (docs/audit.md, ``manage.py audit_role_sql``): the app's role
    does not own the audit tables and has UPDATE/DELETE/TRUNCATE revoked on them."""
    role = f"audit_app_{secrets.token_hex(4)}"  # created in the test's transaction, rolled back
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} NOLOGIN")
        for statement in app_role_statements(role=role):
            cursor.execute(statement)
    assert "permission denied" in _refused("UPDATE audit_event SET action = 'x'", role=role)
    assert "permission denied" in _refused("DELETE FROM audit_event", role=role)
    assert "permission denied" in _refused("TRUNCATE audit_event", role=role)
    assert "must be owner" in _refused(
        "ALTER TABLE audit_event DISABLE TRIGGER audit_append_only", role=role
    )
    assert "must be owner" in _refused("DROP TRIGGER audit_append_only ON audit_event", role=role)
    assert "permission denied" in _refused("SET session_replication_role = replica", role=role)
    assert "permission denied" in _refused(
        "INSERT INTO audit_change (table_name, row_pk, operation, fields) "
        "VALUES ('x', '1', 'update', '[]')",
        role=role,
    )
    # What it may do: append events, and seal them.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {role}")
        audit_record(action="test.as_app_role")
        from audit.chain import audit_seal

        assert audit_seal().sealed >= 1


@pytest.mark.postgres
@pytest.mark.usefixtures("one_of_each")
@pytest.mark.parametrize(
    "setting",
    [
        "pgtrigger.ignore = '{audit_event:audit_append_only}'",
        "pgtrigger.ignore = 'audit_event:audit_append_only'",
        "audit.bypass = 'on'",
        "app.disable_triggers = 'true'",
    ],
)
def test_aud_09_no_session_setting_bypasses_append_only(setting: str) -> None:
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL {setting}")
        cursor.execute("UPDATE audit_event SET action = 'x'")
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL {setting}")
        cursor.execute("DELETE FROM audit_event")
    assert not AuditEvent.objects.filter(action="x").exists()


def test_aud_09_sqlite_pragmas_do_not_bypass_append_only() -> None:
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's own switches")
    audit_record(action="test.append_only")
    try:
        for pragma in ("PRAGMA recursive_triggers = OFF", "PRAGMA ignore_check_constraints = ON"):
            with connection.cursor() as cursor:
                cursor.execute(pragma)
            assert "append-only" in _refused("UPDATE audit_event SET action = 'x'")
    finally:  # the connection outlives this test: later tests need their CHECK constraints
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA ignore_check_constraints = OFF")
