"""The one list of protected resources: models whose rows are someone's health record.

Each app declares its protected models once, next to the model::

    from audit.registry import protected

    @protected("scheduling.booking", patient=lambda booking: booking.client_id)
    class Booking(models.Model):
        ...

and its views that serve them with ``audit.mixins.AuditedMixin`` (``audit_resource =
"scheduling.booking"``). ``patient`` tells whose record a row is (the client's user id, or None).
``track_changes`` (default on) puts database triggers on the table after every ``migrate`` so bulk
and raw-SQL writes leave a change-history row too (``audit.db.change_history_attach``).
The route-walking test (``audit.coverage``) fails if a URL serves a model listed here without the
mixin.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.core.exceptions import ImproperlyConfigured
from django.db import models

M = TypeVar("M", bound=type[models.Model])


@dataclass(frozen=True)
class ProtectedResource:
    name: str
    model: type[models.Model]
    patient: Callable[[Any], uuid.UUID | None]
    track_changes: bool = True

    def patient_id(self, obj: Any) -> uuid.UUID | None:
        value = self.patient(obj)
        return value if value is None or isinstance(value, uuid.UUID) else uuid.UUID(str(value))


_by_name: dict[str, ProtectedResource] = {}


def register(
    model: type[models.Model],
    name: str,
    *,
    patient: Callable[[Any], uuid.UUID | None],
    track_changes: bool = True,
) -> ProtectedResource:
    existing = _by_name.get(name)
    if existing is not None and existing.model is not model:
        raise ImproperlyConfigured(f"Protected resource {name!r} is already {existing.model}.")
    resource = ProtectedResource(
        name=name, model=model, patient=patient, track_changes=track_changes
    )
    _by_name[name] = resource
    _by_model.clear()
    return resource


def unregister(name: str) -> None:
    _by_name.pop(name, None)
    _by_model.clear()


def protected(
    name: str, *, patient: Callable[[Any], uuid.UUID | None], track_changes: bool = True
) -> Callable[[M], M]:
    """Class decorator form of ``register`` for a model."""

    def decorate(model: M) -> M:
        register(model, name, patient=patient, track_changes=track_changes)
        return model

    return decorate


def resource_named(name: str) -> ProtectedResource:
    try:
        return _by_name[name]
    except KeyError:
        raise ImproperlyConfigured(
            f"{name!r} is not a protected resource; declare it with audit.registry.protected."
        ) from None


_by_model: dict[type, ProtectedResource | None] = {}  # resource_of's answers, per class


def resource_of(obj_or_model: Any) -> ProtectedResource | None:
    """The resource a model instance (or model class) belongs to, if it is protected."""
    model = obj_or_model if isinstance(obj_or_model, type) else type(obj_or_model)
    if model not in _by_model:
        found = (r for r in _by_name.values() if issubclass(model, r.model))
        _by_model[model] = next(found, None)
    return _by_model[model]


def resources() -> list[ProtectedResource]:
    return sorted(_by_name.values(), key=lambda r: r.name)
