"""Database-side guarantees of the trail, on PostgreSQL and SQLite.

- **Append-only** (AUD-08, AUD-09): row triggers refuse UPDATE and DELETE on every audit table;
  on PostgreSQL a statement trigger refuses TRUNCATE (row triggers never see it). The trigger
  functions read no setting, so no session variable (``pgtrigger.ignore`` or any other) turns
  them off; only the table owner can disable or drop a trigger, and the application should not
  run as the owner (``docs/audit.md`` gives the SQL).
- **Database clock** (AUD-19): on PostgreSQL a BEFORE INSERT trigger stamps ``occurred_at`` with
  ``clock_timestamp()`` and ``txid`` with the writing transaction, whatever the client sent; on
  SQLite the column default is the database clock and a trigger refuses any other value.
- **Change history** (AUD-04): ``change_history_attach`` puts row triggers on a table that write
  one ``audit_change`` row (table, primary key, operation, names of the changed columns) per
  inserted, updated or deleted row, so ``QuerySet.update``, ``bulk_create``, ``bulk_update`` and
  raw SQL leave the same trace as ``save()``.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import Any

import sqlparse
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

from audit.canonical import EVENT_COLUMNS

AUDIT_TABLES = ("audit_event", "audit_seal", "audit_checkpoint", "audit_change")
CHANGE_TABLE = "audit_change"

_PG_FUNCTIONS = """
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit trail is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE OR REPLACE FUNCTION audit_event_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.occurred_at := clock_timestamp();
    NEW.txid := pg_current_xact_id()::text::bigint;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION audit_checkpoint_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.created_at := clock_timestamp();
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION audit_change_capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    old_row jsonb;
    new_row jsonb;
    changed jsonb := '[]'::jsonb;
    pk text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        new_row := to_jsonb(NEW);
        pk := new_row ->> TG_ARGV[0];
        SELECT coalesce(jsonb_agg(key ORDER BY key), '[]'::jsonb) INTO changed
            FROM jsonb_object_keys(new_row) AS key;
    ELSIF TG_OP = 'UPDATE' THEN
        old_row := to_jsonb(OLD);
        new_row := to_jsonb(NEW);
        pk := new_row ->> TG_ARGV[0];
        SELECT coalesce(jsonb_agg(n.key ORDER BY n.key), '[]'::jsonb) INTO changed
            FROM jsonb_each(new_row) AS n WHERE n.value IS DISTINCT FROM old_row -> n.key;
    ELSE
        pk := to_jsonb(OLD) ->> TG_ARGV[0];
    END IF;
    INSERT INTO audit_change (occurred_at, txid, table_name, row_pk, operation, fields)
        VALUES (clock_timestamp(), pg_current_xact_id()::text::bigint, TG_TABLE_NAME, pk,
                lower(TG_OP), changed);
    RETURN NULL;
END
$$;
ALTER FUNCTION audit_change_capture() SET search_path FROM CURRENT;
"""

_PG_TABLE = """
DROP TRIGGER IF EXISTS audit_append_only ON {table};
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
DROP TRIGGER IF EXISTS audit_no_truncate ON {table};
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
"""

_PG_STAMPS = """
DROP TRIGGER IF EXISTS audit_event_stamp ON audit_event;
CREATE TRIGGER audit_event_stamp BEFORE INSERT ON audit_event
    FOR EACH ROW EXECUTE FUNCTION audit_event_stamp();
DROP TRIGGER IF EXISTS audit_checkpoint_stamp ON audit_checkpoint;
CREATE TRIGGER audit_checkpoint_stamp BEFORE INSERT ON audit_checkpoint
    FOR EACH ROW EXECUTE FUNCTION audit_checkpoint_stamp();
"""

_SQLITE_TABLE = [
    "CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table} "
    "BEGIN SELECT RAISE(ABORT, 'audit trail is append-only: UPDATE on {table} refused'); END",
    "CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table} "
    "BEGIN SELECT RAISE(ABORT, 'audit trail is append-only: DELETE on {table} refused'); END",
]

# The column default is the database clock; any other value (more than a second away) is refused.
_SQLITE_CLOCK = (
    "CREATE TRIGGER IF NOT EXISTS audit_event_db_clock BEFORE INSERT ON audit_event "
    "WHEN NEW.occurred_at IS NULL "
    "OR abs(julianday(NEW.occurred_at) - julianday('now')) * 86400.0 > 1.0 "
    "BEGIN SELECT RAISE(ABORT, 'audit: occurred_at must come from the database clock'); END"
)


def _execute(connection: BaseDatabaseWrapper, statements: list[str]) -> None:
    """Run DDL statements in the caller's transaction (never ``executescript``: it commits)."""
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def install_append_only(connection: BaseDatabaseWrapper) -> None:
    """(Re)install the append-only and clock triggers of the audit tables. Idempotent."""
    if connection.vendor == "postgresql":
        tables = "".join(_PG_TABLE.format(table=t) for t in AUDIT_TABLES)
        # One command at a time: bound server-side (``DATABASE_PREPARED_STATEMENTS``), a
        # statement goes by the extended protocol, which takes a single command.
        scripts = (_PG_FUNCTIONS, tables, _PG_STAMPS)
        _execute(connection, [s for script in scripts for s in sqlparse.split(script)])
    elif connection.vendor == "sqlite":
        statements = [sql.format(table=t) for t in AUDIT_TABLES for sql in _SQLITE_TABLE]
        _execute(connection, [*statements, _SQLITE_CLOCK])
    else:  # pragma: no cover - the project runs on these two engines only
        raise NotImplementedError(connection.vendor)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sqlite_change_triggers(connection: BaseDatabaseWrapper, table: str, pk: str) -> list[str]:
    q = connection.ops.quote_name
    with connection.cursor() as cursor:
        columns = sorted(
            c.name for c in connection.introspection.get_table_description(cursor, table)
        )
    changed = " UNION ALL ".join(
        f"SELECT {_literal(c)} AS f WHERE OLD.{q(c)} IS NOT NEW.{q(c)}" for c in columns
    )
    fields = {
        "i": "json_array(" + ", ".join(_literal(c) for c in columns) + ")",
        "u": f"(SELECT coalesce(json_group_array(f), '[]') FROM ({changed}))",  # noqa: S608
        "d": "'[]'",
    }
    events = {"i": ("INSERT", "NEW", "insert"), "u": ("UPDATE", "NEW", "update")}
    events["d"] = ("DELETE", "OLD", "delete")
    statements = []
    # Identifiers are quoted and names escaped as literals; no value comes from a request.
    for op, (event, row, operation) in events.items():
        name = q(f"audit_change_{table}_{op}")
        statements.append(f"DROP TRIGGER IF EXISTS {name}")
        statements.append(
            f"CREATE TRIGGER {name} AFTER {event} ON {q(table)} BEGIN "  # noqa: S608
            "INSERT INTO audit_change (occurred_at, table_name, row_pk, operation, fields) "
            f"VALUES (STRFTIME('%Y-%m-%d %H:%M:%f', 'NOW') || '000', {_literal(table)}, "
            f"CAST({row}.{q(pk)} AS TEXT), '{operation}', {fields[op]}); END"
        )
    return statements


def change_history_attach(*, connection: BaseDatabaseWrapper, table: str, pk: str = "id") -> None:
    """Record every insert, update and delete of ``table`` in ``audit_change``. Idempotent.

    On SQLite the triggers list the table's columns, so run it again after a schema change of
    the table (``post_migrate`` does, for every tracked model: see ``audit.apps``).
    """
    q = connection.ops.quote_name
    if connection.vendor == "postgresql":
        trigger = q(f"audit_change_{table}")
        _execute(
            connection,
            [
                f"DROP TRIGGER IF EXISTS {trigger} ON {q(table)}",
                f"CREATE TRIGGER {trigger} AFTER INSERT OR UPDATE OR DELETE ON {q(table)} "
                f"FOR EACH ROW EXECUTE FUNCTION audit_change_capture({_literal(pk)})",
            ],
        )
    elif connection.vendor == "sqlite":
        _execute(connection, _sqlite_change_triggers(connection, table, pk))
    else:  # pragma: no cover
        raise NotImplementedError(connection.vendor)


def change_history_detach(*, connection: BaseDatabaseWrapper, table: str) -> None:
    q = connection.ops.quote_name
    if connection.vendor == "postgresql":
        _execute(connection, [f"DROP TRIGGER IF EXISTS {q(f'audit_change_{table}')} ON {q(table)}"])
    else:
        _execute(
            connection,
            [f"DROP TRIGGER IF EXISTS {q(f'audit_change_{table}_{op}')}" for op in "iud"],
        )


def app_role_statements(*, role: str, schema: str = "public") -> list[str]:
    """SQL the tables' owner runs so the application can run as ``role`` without owning them:
    it may read and write the app's tables, only read and append the audit tables, and never
    update, delete, truncate, disable their triggers (owners only) or write change history
    (the change-capture trigger does that as the owner). ``manage.py audit_role_sql`` prints it.
    """
    tables = ", ".join(AUDIT_TABLES)
    return [
        f"GRANT USAGE ON SCHEMA {schema} TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
        f"REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {tables} FROM {role}",
        f"REVOKE INSERT ON {CHANGE_TABLE} FROM {role}",
    ]


def archive_removal_statements(*, vendor: str, cut_seq: int) -> list[str]:
    """What the tables' owner runs, in one transaction, to remove history archived up to
    ``cut_seq`` by ``manage.py audit_archive`` (the signed archive checkpoint stays)."""
    cut = int(cut_seq)  # an integer: nothing else can reach the statements
    if vendor == "postgresql":
        guarded = ("audit_event", "audit_seal")
        return [
            *(f"ALTER TABLE {t} DISABLE TRIGGER audit_append_only" for t in guarded),
            # One statement, so the foreign key from the links is satisfied when it is checked.
            f"WITH gone AS (DELETE FROM audit_seal WHERE seq <= {cut} RETURNING event_id) "  # noqa: S608
            "DELETE FROM audit_event WHERE id IN (SELECT event_id FROM gone)",
            *(f"ALTER TABLE {t} ENABLE TRIGGER audit_append_only" for t in guarded),
        ]
    drops = [f"DROP TRIGGER {t}_no_delete" for t in ("audit_event", "audit_seal")]
    restore = [sql.format(table=t) for t in ("audit_event", "audit_seal") for sql in _SQLITE_TABLE]
    delete = [  # the foreign key is deferred to the commit on SQLite
        f"DELETE FROM audit_event WHERE id IN (SELECT event_id FROM audit_seal WHERE seq <= {cut})",  # noqa: S608
        f"DELETE FROM audit_seal WHERE seq <= {cut}",  # noqa: S608
    ]
    return [*drops, *delete, *restore]


def migrate_install(apps: Any, schema_editor: Any) -> None:
    """``RunPython`` entry point of migration 0001."""
    install_append_only(schema_editor.connection)


# The database's clock (AUD-19). On SQLite, padded to microseconds as Django stores datetimes
# there, so that time-range filters compare like with like. (PostgreSQL's trigger stamps it.)
_CLOCK = {
    "postgresql": "clock_timestamp()",
    "sqlite": "(STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'NOW') || '000')",
}
_PG_MAX_PARAMETERS = 65535


def insert_events(connection: BaseDatabaseWrapper, rows: Sequence[Sequence[Any]]) -> list[Any]:
    """INSERT ``audit_event`` rows (values in ``EVENT_COLUMNS`` order, ready for the database:
    ``details`` as JSON text) in as few statements as the engine allows, atomically; return
    ``(id, occurred_at)`` of each, in order. Plain SQL: the ORM's insert costs a protected read
    several times more than the round trip itself."""
    limit = connection.features.max_query_params or _PG_MAX_PARAMETERS
    per_statement = max(1, limit // len(EVENT_COLUMNS))
    returned: list[Any] = []
    with transaction.atomic(using=connection.alias) if len(rows) > per_statement else nullcontext():
        for start in range(0, len(rows), per_statement):
            batch = rows[start : start + per_statement]
            with _statement_cursor(connection) as cursor:
                cursor.execute(
                    insert_sql(connection.vendor, len(batch)),
                    [value for row in batch for value in row],
                )
                returned.extend(cursor.fetchall())
    return returned


# PostgreSQL: the psycopg cursor that runs the INSERT, one per psycopg connection, kept while
# the connection lives (a new cursor per statement copies the connection's adapters).
_PG_CURSORS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _statement_cursor(connection: BaseDatabaseWrapper) -> AbstractContextManager[Any]:
    """A Django cursor for the INSERT (closed after it, unless kept): ``execute_wrapper``s,
    error wrapping, the broken-transaction and thread checks apply as to any query.

    On PostgreSQL, unless queries are being logged, it wraps a psycopg cursor kept for the
    connection. Where the connection may hold prepared statements (``prepare_threshold`` set,
    ``DATABASE_PREPARED_STATEMENTS``: no transaction pooler between the application and
    PostgreSQL) that cursor binds server-side and reads binary results, so each INSERT shape is
    parsed and planned once per connection, as every other statement then is. Otherwise it is
    the connection's own cursor class. With a
    query log (``DEBUG``, ``CaptureQueriesContext``) it is Django's cursor, as for any query:
    psycopg keeps no statement text of a prepared execution for the log to show.
    """
    if connection.vendor != "postgresql" or connection.queries_logged:
        return connection.cursor()
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    raw = connection.connection
    cursor: Any = _PG_CURSORS.get(raw)
    if cursor is None:
        if raw.prepare_threshold is None:
            cursor = raw.cursor()
        else:
            from psycopg import Cursor  # the engine's driver: imported only on PostgreSQL
            from psycopg.pq import Format

            cursor = Cursor(raw)
            cursor.format = Format.BINARY  # results: id and time need no text parsing
        _PG_CURSORS[raw] = cursor
    connection.validate_thread_sharing()
    return nullcontext(CursorWrapper(cursor, connection))


@functools.lru_cache(maxsize=64)
def insert_sql(vendor: str, count: int) -> str:
    """The INSERT of ``count`` rows (the usual sizes are few: one, a page)."""
    details = "%s::jsonb" if vendor == "postgresql" else "%s"
    one = f"({_CLOCK[vendor]}, {', '.join(['%s'] * (len(EVENT_COLUMNS) - 1))}, {details})"
    columns = ", ".join(EVENT_COLUMNS)
    values = ", ".join([one] * count)
    returning = "RETURNING id, occurred_at"
    return f"INSERT INTO audit_event (occurred_at, {columns}) VALUES {values} {returning}"  # noqa: S608


def db_now(connection: BaseDatabaseWrapper) -> datetime:
    """The database server's clock (UTC), never the application's (AUD-19)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT clock_timestamp()")
            value = cursor.fetchone()[0]
            return value.astimezone(UTC)
        cursor.execute("SELECT STRFTIME('%Y-%m-%d %H:%M:%f', 'NOW')")
        text = cursor.fetchone()[0]
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
