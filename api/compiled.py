"""Statements built once and run many times: the ORM's queries, without their build cost.

Kept only where a benchmark shows it pays (docs/adr/0004-compiled-statements.md, with the
condition for removing it). Django builds and compiles a queryset again on every evaluation:
for the booking's two statements that is about 2 ms of Python before a query that runs in a
fraction of one. ``CompiledRead`` is used for exactly:

- the booking's locking read (``scheduling.bookings.create._LOCKING_READ``: the therapist
  locked through the session type, with EXISTS facts about the parties);
- the slot engine's read (``scheduling.selectors._SLOT_INPUT_ROWS``: rules, overrides, bookings
  and imported busy times in one UNION ALL), on every slot list and every booking;
- the video row locks (``video.locks``: the booking, the room by key, participant or booking,
  and a room's participants), two of which every step of a call's set-up takes (join, hello,
  admit), and the join's two other reads: the participant's row
  (``video.services._PARTICIPANT_OF``) and the client's licence check
  (``scheduling.selectors._LICENCE_IN``).

A ``CompiledRead`` keeps what the ORM made of a queryset, for each database: the SQL, its
parameters, and how to turn rows into what the queryset yields. Each run puts that run's values
in their places and executes the kept SQL; the rows come back through the compiler's own
converters, as model instances (``select_related`` and annotations included) or as
``values_list`` tuples. That reaches into Django's private query API (``klass_info``,
``select``, ``annotation_col_map``, ``get_related_populators``, ``_iterable_class``): the
module is checked against each Django minor version in ``CHECKED_DJANGO`` and a test fails on
any other, so an upgrade is a deliberate act.

A locking read (``select_for_update``) is refused outside ``transaction.atomic()`` on every
engine, SQLite included, where the ORM lets it run. Each value must be of its parameter's
type (a UUID, not its text).

``build`` makes the queryset from keyword-only parameters (those with a default keep it: call
``build`` itself for other values). It is called once per database with
stand-in values, one distinct value per parameter, of the type its annotation names (UUID,
datetime, date, str or int); the places of those values among the compiled parameters are
where each run's values go. So ``build`` must use each parameter as a value in the query and
never compute with it or branch on it (a derived value is a parameter of its own): it is
built twice, with two sets of stand-ins, and refused unless both give the same SQL, every
parameter is found in the same places and the other parameters are equal. A branch taken on
the real value only (``if jurisdiction == "US-NY"``) cannot be seen that way: don't write one.

``insert_rows`` and ``update_row`` do the same for an INSERT of model instances and an UPDATE
of one row by key (the booking's, its transition's and emails' inserts, the idempotency claim
and its stored response): their SQL is made once per model (and number of rows, or field
names) and database from the model's public metadata, and each run binds the values as
``Model.save`` would (each field's ``pre_save`` and ``get_db_prep_save``). ``insert_together``
puts several such INSERTs in one statement on PostgreSQL (a ``WITH`` of data-modifying
statements): a new booking's row, its first transition and its emails, one round trip instead of
three (ADR 0004 has the measurement).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import itertools
import typing
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Generic, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model, QuerySet
from django.db.models.expressions import DatabaseDefault
from django.db.models.query import (  # type: ignore[attr-defined]  # not in the stubs
    ModelIterable,
    ValuesListIterable,
    get_related_populators,
)
from django.db.transaction import TransactionManagementError

T = TypeVar("T")
# Django minor versions this module was read against (the private names above and in
# ``_Plan``) and tested on; tests/api/test_compiled.py fails on any other.
CHECKED_DJANGO = frozenset({(5, 2)})
_SERIAL = itertools.count(1)


def _stand_in(kind: type, n: int) -> Any:
    """A value of ``kind`` that no real parameter of a query takes, distinct for each ``n``."""
    if kind is uuid.UUID:
        return uuid.UUID(int=(0xC0FFEE << 96) + n)
    if kind is datetime:
        return datetime(1901, 2, 3, tzinfo=UTC) + timedelta(seconds=n)
    if kind is date:
        return date(1901, 2, 3) + timedelta(days=n)
    if kind is str:
        return f"\x1fcompiled-read-{n}\x1f"
    if kind is int:
        return -(10**12) - n
    raise TypeError(f"CompiledRead: no stand-in for a parameter of type {kind!r}")


def _db_value(value: Any, connection: BaseDatabaseWrapper) -> Any:
    """``value`` as the ORM passes it to the database driver."""
    if isinstance(value, uuid.UUID):
        return value if connection.features.has_native_uuid_field else value.hex
    if isinstance(value, datetime):
        return connection.ops.adapt_datetimefield_value(value)
    if isinstance(value, date):
        return connection.ops.adapt_datefield_value(value)
    return value


class _Plan:
    """What one database's compiler made of the queryset."""

    def __init__(self, queryset: QuerySet[Any], stand_ins: dict[str, Any], alias: str) -> None:
        connection = connections[alias]
        self.compiler = queryset.query.get_compiler(using=alias)
        self.sql, params = self.compiler.as_sql()
        self.params = list(params)
        self.places: dict[str, list[int]] = {}
        for name, value in stand_ins.items():
            wanted = _db_value(value, connection)
            self.places[name] = [i for i, p in enumerate(self.params) if p == wanted]
            if not self.places[name]:
                raise ValueError(f"CompiledRead: parameter {name!r} is not a value of the query")
        if queryset._prefetch_related_lookups:  # type: ignore[attr-defined]  # not in the stubs
            raise TypeError("CompiledRead: prefetch_related() is not kept")
        self.locks = bool(queryset.query.select_for_update)
        self.iterable = queryset._iterable_class
        compiler = self.compiler
        self.width = compiler.col_count if compiler.has_extra_select else None
        self.converters = list(
            compiler.get_converters([s[0] for s in compiler.select[: compiler.col_count]]).items()
        )
        if self.iterable is ModelIterable:
            klass_info, select = compiler.klass_info, compiler.select
            assert klass_info is not None
            fields = klass_info["select_fields"]
            self.model_slice = slice(fields[0], fields[-1] + 1)
            self.init_list = [f[0].target.attname for f in select[self.model_slice]]
            self.populators = get_related_populators(klass_info, select, alias)
            self.annotations = list(compiler.annotation_col_map.items())
        elif self.iterable is not ValuesListIterable:
            raise TypeError("CompiledRead: a queryset of models or of values_list() tuples")

    def fixed(self) -> list[Any]:
        """The parameters that are no parameter's place: the query's own constants."""
        taken = {i for places in self.places.values() for i in places}
        return [p for i, p in enumerate(self.params) if i not in taken]

    def run(self, values: dict[str, Any], alias: str) -> Iterator[Any]:
        connection = connections[alias]
        if self.locks and not connection.in_atomic_block:
            raise TransactionManagementError(
                "select_for_update cannot be used outside of a transaction."
            )
        params = list(self.params)
        for name, value in values.items():
            db_value = _db_value(value, connection)
            for i in self.places[name]:
                params[i] = db_value
        with connection.cursor() as cursor:
            cursor.execute(self.sql, params)
            rows = cursor.fetchall()
        converted = map(tuple, self._converted(rows, connection)) if self.converters else rows
        if self.iterable is ValuesListIterable:
            yield from (tuple(row[: self.width]) for row in converted)
            return
        model = self.compiler.query.model
        for row in converted:
            obj = model.from_db(alias, self.init_list, row[self.model_slice])
            for populator in self.populators:
                populator.populate(row, obj)
            for name, position in self.annotations:
                setattr(obj, name, row[position])
            yield obj

    def _converted(self, rows: list[Any], connection: BaseDatabaseWrapper) -> Iterator[list[Any]]:
        """The compiler's converters (as ``SQLCompiler.apply_converters``), with this thread's
        connection."""
        for row in rows:
            values = list(row)
            for position, (converters, expression) in self.converters:
                value = values[position]
                for converter in converters:
                    value = converter(value, expression, connection)
                values[position] = value
            yield values


class CompiledRead(Generic[T]):
    """``build(**parameters)``'s queryset, compiled once per database (see the module)."""

    def __init__(self, build: Callable[..., QuerySet[Any, T]]) -> None:
        self.build = build
        hints = typing.get_type_hints(build)
        names = [
            p.name
            for p in inspect.signature(build).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty
        ]
        self.kinds = {name: hints[name] for name in names}
        self._plans: dict[tuple[str, str], _Plan] = {}

    def _plan(self, alias: str) -> _Plan:
        key = (alias, connections[alias].vendor)
        plan = self._plans.get(key)
        if plan is None:
            sets = [{n: _stand_in(k, next(_SERIAL)) for n, k in self.kinds.items()} for _ in "ab"]
            plan, check = (_Plan(self.build(**s), s, alias) for s in sets)
            # A value computed from a parameter differs between the two builds.
            if (plan.sql, plan.places, plan.fixed()) != (check.sql, check.places, check.fixed()):
                raise ValueError(f"CompiledRead: {self.build.__qualname__} changes with its values")
            self._plans[key] = plan
        return plan

    def list(self, *, using: str = DEFAULT_DB_ALIAS, **values: Any) -> list[T]:
        """What ``list(build(**values))`` gives, without building the queryset."""
        if values.keys() != self.kinds.keys():
            raise TypeError(f"CompiledRead: give exactly {sorted(self.kinds)}")
        for name, value in values.items():
            kind = self.kinds[name]
            if not isinstance(value, kind) or (kind is date and isinstance(value, datetime)):
                raise TypeError(f"CompiledRead: {name} must be a {kind.__name__}")
        return list(self._plan(using).run(values, using))

    def first(self, *, using: str = DEFAULT_DB_ALIAS, **values: Any) -> T | None:
        """The first row (the queryset should be sliced or ``LIMIT``ed to one)."""
        rows = self.list(using=using, **values)
        return rows[0] if rows else None


@functools.lru_cache(maxsize=64)
def _insert_sql(
    model: type[Model], using: str, rows: int, ignore_conflicts: bool, returning: bool
) -> tuple[str, list[Field[Any, Any]], list[Field[Any, Any]]]:
    connection = connections[using]
    quote = connection.ops.quote_name
    meta = model._meta
    made: list[Field[Any, Any]] = [meta.auto_field] if returning and meta.auto_field else []
    fields = [f for f in meta.concrete_fields if f is not meta.auto_field]
    one = f"({', '.join(['%s'] * len(fields))})"
    # Identifiers from the model's metadata; the values are parameters.
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "  # noqa: S608
        f"VALUES {', '.join([one] * rows)}"
    )
    if ignore_conflicts:
        sql += " ON CONFLICT DO NOTHING"
    if made:
        sql += f" RETURNING {', '.join(quote(f.column) for f in made)}"
    return sql, fields, made


def _insert_params(
    objs: Sequence[Model], fields: list[Field[Any, Any]], connection: BaseDatabaseWrapper
) -> list[Any]:
    """The values of ``objs``' ``fields``, as ``Model.save`` binds them."""
    values = [f.pre_save(obj, add=True) for obj in objs for f in fields]
    if any(isinstance(v, DatabaseDefault) for v in values):
        raise TypeError("insert_rows: a db_default field needs a value")
    return [
        f.get_db_prep_save(v, connection) for f, v in zip(fields * len(objs), values, strict=True)
    ]


def insert_rows(
    objs: Sequence[Model], *, ignore_conflicts: bool = False, using: str = DEFAULT_DB_ALIAS
) -> int:
    """INSERT ``objs`` (instances of one model) in one statement; return how many went in.

    As ``bulk_create`` without its per-call build: a constraint's refusal raises
    ``IntegrityError``, or with ``ignore_conflicts`` skips the row (``ON CONFLICT DO NOTHING``:
    unique and, on PostgreSQL, exclusion constraints). An auto-increment key is always the
    database's: a single object gets it from ``RETURNING`` and, once in, is marked saved;
    several objects with such a key are left unsaved (``bulk_create`` for those). Every other
    field is written from the instance: a ``db_default`` left unset is refused."""
    if not objs:
        return 0
    connection = connections[using]
    single = len(objs) == 1
    sql, fields, made = _insert_sql(type(objs[0]), using, len(objs), ignore_conflicts, single)
    params = _insert_params(objs, fields, connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if made:
            row = cursor.fetchone()
            inserted = 0 if row is None else 1
            for field, value in zip(made, row or (), strict=False):
                setattr(objs[0], field.attname, value)
        else:
            inserted = cursor.rowcount
    keyed = single or type(objs[0])._meta.auto_field is None
    for obj in objs if keyed and inserted == len(objs) else ():
        obj._state.adding, obj._state.db = False, using
    return inserted


@dataclasses.dataclass(frozen=True)
class Rows:
    """One part of ``insert_together``: instances of one model."""

    objs: Sequence[Model]
    ignore_conflicts: bool = False


def insert_together(*parts: Rows, using: str = DEFAULT_DB_ALIAS) -> None:
    """INSERT every part, as ``insert_rows`` each, in one statement on PostgreSQL (a ``WITH``
    of data-modifying statements: one round trip instead of one a part) and one statement a
    part elsewhere. The parts must not need each other's database-made values (a row refers to
    another by a key made in Python, such as a UUID); an auto-increment key is not read back,
    so instances with one stay unsaved. A constraint's refusal raises ``IntegrityError`` and
    inserts nothing of any part (foreign keys are checked at commit, as Django declares them)."""
    parts = tuple(part for part in parts if part.objs)
    if not parts:
        return
    connection = connections[using]
    if connection.vendor != "postgresql":
        for part in parts:
            insert_rows(part.objs, ignore_conflicts=part.ignore_conflicts, using=using)
        return
    statements, params = [], []
    for part in parts:
        model = type(part.objs[0])
        sql, fields, _ = _insert_sql(model, using, len(part.objs), part.ignore_conflicts, False)
        statements.append(sql)
        params.extend(_insert_params(part.objs, fields, connection))
    *first, last = statements
    ctes = ", ".join(f"p{i} AS ({sql})" for i, sql in enumerate(first))
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {ctes} {last}" if ctes else last, params)
    for part in parts:
        if type(part.objs[0])._meta.auto_field is None:
            for obj in part.objs:
                obj._state.adding, obj._state.db = False, using


@functools.lru_cache(maxsize=64)
def _update_sql(
    model: type[Model], using: str, names: tuple[str, ...]
) -> tuple[str, list[Field[Any, Any]]]:
    quote = connections[using].ops.quote_name
    meta = model._meta
    by_name = {f.attname: f for f in meta.concrete_fields} | {
        f.name: f for f in meta.concrete_fields
    }
    fields = [by_name[name] for name in names]
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
    pk = quote(meta.pk.column)
    # Identifiers from the model's metadata; the values are parameters.
    sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {pk} = %s"  # noqa: S608
    return sql, fields


def update_row(obj: Model, *, using: str = DEFAULT_DB_ALIAS, **values: Any) -> int:
    """``type(obj).objects.filter(pk=obj.pk).update(**values)`` for plain values (no
    expressions) of concrete fields by name (or by attname: ``process_id=`` sets a foreign key
    to a key), with its SQL made once per model and field names;
    ``obj`` takes the values when its row changed. Returns the number of rows changed (0 or 1).
    """
    if not values:
        raise TypeError("update_row: give the fields to set")
    connection = connections[using]
    sql, fields = _update_sql(type(obj), using, tuple(values))
    params = [
        f.get_db_prep_save(value, connection)
        for value, f in zip(values.values(), fields, strict=True)
    ]
    params.append(obj._meta.pk.get_db_prep_value(obj.pk, connection))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        changed: int = cursor.rowcount
    for name, value in values.items() if changed else ():
        setattr(obj, name, value)
    return changed
