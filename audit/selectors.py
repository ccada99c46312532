"""Reads of the trail: filtered event lists, sealed rows in chain order, a client's access log."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet
from django.utils.dateparse import parse_datetime

from api.models import User
from audit.canonical import EVENT_FIELDS
from audit.models import AuditEvent, AuditSeal, Outcome

SEAL_FIELDS = ("seq", "content_hash", "prev_hash", "hash", "sealed_at")


@dataclass(frozen=True)
class EventFilters:
    """What a compliance officer narrows the trail to. ``None`` means "any"."""

    since: datetime | None = None
    until: datetime | None = None
    actor_id: uuid.UUID | None = None
    patient_id: uuid.UUID | None = None
    action: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    outcome: str | None = None

    def q(self, prefix: str = "") -> Q:
        conditions = {
            "occurred_at__gte": self.since,
            "occurred_at__lt": self.until,
            "actor_id": self.actor_id,
            "patient_id": self.patient_id,
            "action": self.action,
            "resource_type": self.resource_type,
            "resource_id": self.resource_id,
            "outcome": self.outcome,
        }
        return Q(**{prefix + k: v for k, v in conditions.items() if v is not None})

    def as_details(self) -> dict[str, Any]:
        """The filters as recorded in the "audit log used" event: ids and codes, no free text."""
        out: dict[str, Any] = {}
        for name, value in vars(self).items():
            if value is not None:
                out[name] = value.isoformat() if isinstance(value, datetime) else str(value)
        return out


def event_list(*, filters: EventFilters) -> QuerySet[AuditEvent]:
    """Events (sealed or not yet) matching ``filters``, newest first, with their seal."""
    return AuditEvent.objects.filter(filters.q()).select_related("seal").order_by("-id")


def _as_datetime(value: Any) -> datetime:
    if not isinstance(value, datetime):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            parsed = parse_datetime(value)
            if parsed is None:
                raise
            value = parsed
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _as_uuid(value: Any) -> uuid.UUID | None:
    if value is None or isinstance(value, uuid.UUID):
        return value
    return uuid.UUID(str(value))


_DATETIMES = frozenset({"occurred_at", "sealed_at"})
_UUIDS = frozenset({"actor_id", "session_id", "patient_id"})


def raw_rows(query: QuerySet[Any], names: Sequence[str]) -> list[dict[str, Any]]:
    """``query.values_list(*columns)`` as dicts keyed by ``names``, without the ORM's
    per-field conversion (the sealer, verify and export read a million rows); values are
    normalised here the same way on both engines."""
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        fetched = cursor.fetchall()
    rows = []
    for values in fetched:
        row = dict(zip(names, values, strict=True))
        for name in _DATETIMES.intersection(row):
            row[name] = _as_datetime(row[name])
        for name in _UUIDS:
            if name in row:
                row[name] = _as_uuid(row[name])
        if isinstance(row.get("details"), str):
            row["details"] = json.loads(row["details"])
        rows.append(row)
    return rows


_SEALED_COLUMNS = (*SEAL_FIELDS, *(f"event__{name}" for name in EVENT_FIELDS))
_SEALED_NAMES = (*SEAL_FIELDS, *EVENT_FIELDS)


def sealed_rows(
    *,
    after_seq: int,
    limit: int,
    upto_seq: int | None = None,
    filters: EventFilters | None = None,
) -> list[dict[str, Any]]:
    """Up to ``limit`` sealed events after ``after_seq`` in chain order, as plain dicts.

    Keyset pagination on ``seq``: stable however large the trail and whatever is appended
    meanwhile.
    """
    query = AuditSeal.objects.filter(seq__gt=after_seq)
    if upto_seq is not None:
        query = query.filter(seq__lte=upto_seq)
    if filters is not None:
        query = query.filter(filters.q("event__"))
    return raw_rows(query.order_by("seq").values_list(*_SEALED_COLUMNS)[:limit], _SEALED_NAMES)


def access_log_for(*, user: User) -> QuerySet[AuditEvent]:
    """Who else read or changed ``user``'s records (allowed accesses), newest first."""
    return (
        AuditEvent.objects.filter(patient_id=user.pk, outcome=Outcome.ALLOWED)
        .exclude(actor_id=user.pk)
        .order_by("-id")
    )


def users_by_id(ids: set[uuid.UUID]) -> dict[uuid.UUID, User]:
    return {u.pk: u for u in User.objects.filter(pk__in=ids).only("id", "full_name", "role")}
