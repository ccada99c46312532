"""The audit trail as identity sees it: a port at the bottom layer, filled in by the audit app.

Identity (``api.services``: sign-in, second factor, accounts, rate limits; ``create_user``)
records every security event in the audit trail, explicitly, in the same transaction as the
change it describes. Identity lives in ``api``, the bottom layer, below ``audit``
(docs/architecture.md), so it never imports the audit app: it calls ``audit_event_record``
here, and the audit app puts its one writer (``audit.services.audit_record``) behind it from
``AuditConfig.ready()``. The call is synchronous, on the caller's connection, inside the
caller's transaction: a rollback removes the event with the change. The audit app is always
installed; a call with no recorder registered raises ``ImproperlyConfigured`` (an event is
never skipped).

``Outcome`` is defined here, below both: identity names it, and ``audit.models`` uses it as the
choices of ``AuditEvent.outcome``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.http import HttpRequest

if TYPE_CHECKING:
    from api.models import User


class Outcome(models.TextChoices):
    ALLOWED = "allowed"
    DENIED = "denied"
    ERROR = "error"


class AuditRecorder(Protocol):
    """Write one event now, in the current transaction (``audit.services.audit_record``)."""

    def __call__(
        self,
        *,
        action: str,
        outcome: str,
        actor: User | None,
        actor_label: str,
        request: HttpRequest | None,
        resource_type: str,
        resource_id: str,
        details: dict[str, Any] | None,
    ) -> object: ...


_recorder: list[AuditRecorder] = []


def audit_recorder_register(recorder: AuditRecorder) -> None:
    _recorder[:] = [recorder]


def audit_event_record(
    *,
    action: str,
    outcome: str = Outcome.ALLOWED,
    actor: User | None = None,
    actor_label: str = "",
    request: HttpRequest | None = None,
    resource_type: str = "",
    resource_id: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    """Record one event in the caller's transaction. ``actor`` is the user who acted (None:
    ``actor_label`` says who, ``anonymous`` or ``system``; with neither, the request's
    authenticated user); ``request`` gives the origin (client IP, user agent, request id)."""
    if not _recorder:
        raise ImproperlyConfigured("The audit app has not registered its recorder (audit.apps).")
    _recorder[0](
        action=action,
        outcome=outcome,
        actor=actor,
        actor_label=actor_label,
        request=request,
        resource_type=resource_type,
        resource_id=resource_id,
        details=details,
    )
