"""The one way to write the audit trail. Call it in the same transaction as the change.

- ``audit_record``: one event (security events, domain events of a service).
- ``audit_record_many``: several events of one request in one INSERT (AUD-20).
- ``audit_access``: a read or change of a protected object (``audit.registry``) from a service:
  inside a request served by ``AuditedMixin`` it joins that request's batch, otherwise it is
  written at once.

Every event carries who (actor, role, token family), from where (client IP through trusted
proxies, user agent, request id) and what (action, resource, patient, outcome) plus a small
``details`` object that never holds PHI values: keys naming personal data are redacted, strings
are shortened and stripped of control characters (AUD-13, AUD-16). The time comes from the
database clock (AUD-19). Sealing into the hash chain happens later, off the request path
(``audit.chain.audit_seal``).
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.http import HttpRequest

from api.logging import encode_for_log
from api.services.ratelimit import client_ip
from audit.canonical import nfc
from audit.db import EVENT_COLUMNS, insert_events
from audit.models import AuditEvent, Outcome
from audit.registry import resource_of

# Keys whose values are personal data or secrets: recorded as "[redacted]" at any depth.
_PHI_KEYS = frozenset(
    {
        "password",
        "token",
        "code",
        "secret",
        "otp",
        "email",
        "name",
        "full_name",
        "first_name",
        "last_name",
        "phone",
        "address",
        "dob",
        "date_of_birth",
        "birth_date",
        "notes",
        "note",
        "body",
        "message",
        "text",
        "content",
        "diagnosis",
        "query",
        "q",
        "search",
    }
)
_MAX_TEXT = 256
_MAX_DEPTH = 4
_MAX_ITEMS = 500
SYSTEM = "system"
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class EventDraft:
    """What happened; ``Origin`` says who and from where."""

    action: str
    outcome: str = Outcome.ALLOWED
    resource_type: str = ""
    resource_id: str = ""
    patient_id: uuid.UUID | None = None
    details: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Origin:
    actor_id: uuid.UUID | None = None
    actor_role: str = ""
    actor_label: str = ""
    session_id: uuid.UUID | None = None
    source_ip: str = ""
    user_agent: str = ""
    request_id: str = ""


def text(value: Any, limit: int = _MAX_TEXT) -> str:
    """Untrusted text as stored: NFC, control characters escaped (AUD-16), bounded."""
    value = str(value)
    if value.isascii() and value.isprintable():  # the usual case: nothing to change
        return value[:limit]
    return encode_for_log(nfc(value))[:limit]


def _clean(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):  # canonical encoding has integers only (AUD-12)
        return repr(value)
    if isinstance(value, Mapping) and depth < _MAX_DEPTH:
        return {
            text(k, 64): "[redacted]" if str(k).lower() in _PHI_KEYS else _clean(v, depth + 1)
            for k, v in list(value.items())[:_MAX_ITEMS]
        }
    if isinstance(value, list | tuple | set | frozenset) and depth < _MAX_DEPTH:
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [_clean(item, depth + 1) for item in list(items)[:_MAX_ITEMS]]
    return text(value)


def clean_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    cleaned = _clean(dict(details or {}), 0)
    return cleaned if isinstance(cleaned, dict) else {}


def _source_ip(request: HttpRequest) -> str:
    try:
        return str(ipaddress.ip_address(client_ip(request)))
    except ValueError:
        return ""


def origin_of(*, request: Any = None, actor: Any = None, actor_label: str = "") -> Origin:
    """Who acted (``actor``, else the request's authenticated user) and from where."""
    if actor is None and not actor_label and request is not None:
        actor = _request_user(request)
    authenticated = actor is not None and getattr(actor, "is_authenticated", False)
    session_id = None
    if request is not None:
        fam = getattr(getattr(request, "auth", None), "fam", None)
        session_id = _uuid_or_none(fam)
    return Origin(
        actor_id=actor.pk if authenticated else None,
        actor_role=str(actor.role) if authenticated else "",
        actor_label="" if authenticated else text(actor_label or ANONYMOUS, 32),
        session_id=session_id,
        source_ip=_source_ip(request) if request is not None else "",
        user_agent=text(request.META.get("HTTP_USER_AGENT", "")) if request is not None else "",
        request_id=text(getattr(request, "request_id", "") or "", 64) if request else "",
    )


def _request_user(request: Any) -> Any:
    """The user DRF authenticated, without authenticating again (it may have just failed)."""
    from rest_framework.request import Request

    if isinstance(request, Request):
        return getattr(request, "_user", None)
    return getattr(request, "user", None)


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


_UUID: models.UUIDField[Any, Any] = models.UUIDField()  # as the engine stores one (SQLite: hex)


def _prepared(value: uuid.UUID | None, db: BaseDatabaseWrapper) -> Any:
    if value is None or (isinstance(value, uuid.UUID) and db.features.has_native_uuid_field):
        return value
    return _UUID.get_db_prep_save(value, db)


def audit_record_many(
    *, drafts: Sequence[EventDraft], origin: Origin
) -> list[tuple[int, datetime]]:
    """Insert ``drafts`` in one statement (split only by the engine's parameter limit); return
    each new event's ``(id, occurred_at)``, in order. Rows are built straight from the drafts:
    this runs on every protected read, so it builds no model instance per event (and looks the
    connection up once: each use of ``django.db.connection`` looks it up again)."""
    db = connections[DEFAULT_DB_ALIAS]
    actor_id = _prepared(origin.actor_id, db)
    session_id = _prepared(origin.session_id, db)
    rows = []
    for draft in drafts:
        values = {
            "actor_id": actor_id,
            "actor_role": origin.actor_role,
            "actor_label": origin.actor_label,
            "session_id": session_id,
            "action": text(draft.action, 64),
            "resource_type": text(draft.resource_type, 64),
            "resource_id": text(draft.resource_id, 64),
            "patient_id": _prepared(draft.patient_id, db),
            "outcome": draft.outcome,
            "source_ip": origin.source_ip,
            "user_agent": origin.user_agent,
            "request_id": origin.request_id,
            "details": json.dumps(clean_details(draft.details)),
        }
        rows.append([values[name] for name in EVENT_COLUMNS])
    return [(pk, _returned_datetime(at)) for pk, at in insert_events(db, rows)]


def _returned_datetime(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)  # SQLite: naive UTC


def audit_record(
    *,
    action: str,
    actor: Any = None,
    actor_label: str = "",
    outcome: str = Outcome.ALLOWED,
    request: HttpRequest | None = None,
    resource_type: str = "",
    resource_id: str = "",
    patient_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Record one event. ``actor`` is a user (or None: ``actor_label`` says anonymous/system;
    with neither, the request's authenticated user)."""
    draft = EventDraft(
        action=action,
        outcome=outcome,
        resource_type=resource_type,
        resource_id=resource_id,
        patient_id=patient_id,
        details=details,
    )
    origin = origin_of(request=request, actor=actor, actor_label=actor_label)
    ((pk, occurred_at),) = audit_record_many(drafts=[draft], origin=origin)
    event = AuditEvent(
        pk=pk,
        occurred_at=occurred_at,
        actor_id=origin.actor_id,
        actor_role=origin.actor_role,
        actor_label=origin.actor_label,
        session_id=origin.session_id,
        action=text(action, 64),
        resource_type=text(resource_type, 64),
        resource_id=text(resource_id, 64),
        patient_id=patient_id,
        outcome=outcome,
        source_ip=origin.source_ip,
        user_agent=origin.user_agent,
        request_id=origin.request_id,
        details=clean_details(details),
    )
    event._state.adding = False
    return event


# --- Access to protected objects ---------------------------------------------------------------


@dataclass(frozen=True)
class Touched:
    """A protected object as recorded: taken when touched (a deleted object loses its pk)."""

    resource: str
    pk: str
    patient_id: uuid.UUID | None
    action: str | None = None


def touched(obj: Any, action: str | None = None) -> Touched | None:
    """``obj`` as a ``Touched``, or None when it is not a protected resource."""
    resource = resource_of(obj)
    if resource is None:
        return None
    return Touched(
        resource=resource.name, pk=str(obj.pk), patient_id=resource.patient_id(obj), action=action
    )


@dataclass
class AccessScope:
    """The protected objects one request touched, recorded together when it ends."""

    objects: list[Touched] = field(default_factory=list)
    drafts: list[EventDraft] = field(default_factory=list)


_scope: ContextVar[AccessScope | None] = ContextVar("audit_access_scope", default=None)


@contextmanager
def access_scope() -> Iterator[AccessScope]:
    scope = AccessScope()
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)


def access_draft(
    *,
    obj: Any,
    action: str,
    outcome: str = Outcome.ALLOWED,
    details: Mapping[str, Any] | None = None,
) -> EventDraft:
    item = touched(obj)
    if item is None:
        raise ImproperlyConfigured(f"{type(obj).__name__} is not a protected resource.")
    return EventDraft(
        action=action,
        outcome=outcome,
        resource_type=item.resource,
        resource_id=item.pk,
        patient_id=item.patient_id,
        details=details,
    )


def audit_access(
    *,
    obj: Any,
    action: str,
    request: Any = None,
    actor: Any = None,
    actor_label: str = "",
    outcome: str = Outcome.ALLOWED,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Record a read or change of a protected object from a service.

    Inside a request served by ``AuditedMixin`` the event joins the request's batch (written
    in the request's transaction); elsewhere (jobs, commands, webhooks) it is written now.
    """
    draft = access_draft(obj=obj, action=action, outcome=outcome, details=details)
    scope = _scope.get()
    if scope is not None and request is None and actor is None and not actor_label:
        scope.drafts.append(draft)
        return
    if request is None and actor is None:
        actor_label = actor_label or SYSTEM
    origin = origin_of(request=request, actor=actor, actor_label=actor_label)
    audit_record_many(drafts=[draft], origin=origin)


def touch(obj: Any, action: str | None = None) -> None:
    """Note that the current request served ``obj`` (``AuditedMixin`` records it at the end)."""
    scope = _scope.get()
    item = touched(obj, action)
    if scope is not None and item is not None:
        scope.objects.append(item)


def access_drafts(
    *, objects: Sequence[Touched], action: str, details: Mapping[str, Any] | None = None
) -> list[EventDraft]:
    """Events for protected objects served together.

    A list becomes one event per client whose records it held, naming the ids (AUD-01: every
    returned record is findable per client; AUD-20: one row per client, not per record).
    Anything else becomes one event per object.
    """
    base = dict(details or {})
    if action != "list":
        return [
            EventDraft(
                action=action,
                resource_type=item.resource,
                resource_id=item.pk,
                patient_id=item.patient_id,
                details=base,
            )
            for item in objects
        ]
    groups: dict[tuple[str, uuid.UUID | None], list[str]] = {}
    for item in objects:
        groups.setdefault((item.resource, item.patient_id), []).append(item.pk)
    return [
        EventDraft(
            action=action,
            resource_type=name,
            resource_id=ids[0] if len(ids) == 1 else "",
            patient_id=patient_id,
            details={**base, "ids": ids, "count": len(ids)},
        )
        for (name, patient_id), ids in groups.items()
    ]
