"""One mechanism for every protected endpoint: declare the resource, every access is recorded.

A DRF view (APIView, generic view or viewset) serving a protected resource says so once::

    class BookingDetailApi(AuditedMixin, APIView):
        audit_resource = "scheduling.booking"   # declared with audit.registry.protected

Then, without the view doing anything else:

- a request that writes runs in one transaction. When it succeeds, what it served or changed
  is recorded in one INSERT, in that transaction (a read's rows commit on their own, before the
  response leaves): every protected object in the response (the serializer's ``instance``,
  page results included), fetched by ``get_object()``, or reported by a service through
  ``audit.services.audit_access`` (a reported object gets that event only, not a second one).
  A list records one event per client (AUD-01, AUD-20); a write records the names of the
  fields sent, never their values (AUD-13);
- if that insert fails, the transaction (the change included) rolls back and the response is a
  500: no protected data leaves without its audit row (AUD-07);
- a DELETE whose object the view did not fetch through ``get_object()`` still names the client:
  the record the URL names is looked up before the handler runs;
- a 401, 403 or 404 is recorded as ``denied`` with the reason (the problem ``code``), in its own
  transaction after the request's has rolled back; for an authenticated caller the record the
  URL named is looked up so the event names its client (AUD-02); an unauthenticated one gets no
  lookup and no client (AUD-03);
- an unexpected error is recorded as ``error`` when the database still allows it.

The actor is DRF's authenticated user, i.e. the JWT's subject (AUD-05). A write answered with
a status of 400 or more is rolled back, so a refused request changes nothing.
"""

from __future__ import annotations

import logging
import re
from contextlib import nullcontext
from typing import Any, ClassVar

from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.http import HttpResponseBase
from rest_framework.permissions import SAFE_METHODS
from rest_framework.serializers import ListSerializer

from audit.models import Outcome
from audit.registry import ProtectedResource, resource_named
from audit.services import (
    AccessScope,
    EventDraft,
    Touched,
    access_drafts,
    access_scope,
    audit_record_many,
    origin_of,
    touch,
    touched,
)

logger = logging.getLogger(__name__)

DENIED_STATUSES = frozenset({401, 403, 404})
_BY_METHOD = {"POST": "create", "PUT": "update", "PATCH": "update", "DELETE": "delete"}
_BY_VIEWSET_ACTION = {
    "retrieve": "read",
    "list": "list",
    "create": "create",
    "update": "update",
    "partial_update": "update",
    "destroy": "delete",
}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-\[\]]{0,63}$")


def _instances(serializer: Any) -> list[Any]:
    instance = getattr(serializer, "instance", None)
    if instance is None:
        return []
    if isinstance(serializer, ListSerializer):
        return list(instance)
    return [instance]


def rendered_objects(data: Any) -> list[Any]:
    """The model instances a DRF response's data was rendered from (page results included)."""
    serializer = getattr(data, "serializer", None)
    if serializer is not None:
        return _instances(serializer)
    found: list[Any] = []
    if isinstance(data, dict):
        for value in data.values():
            found.extend(_instances(getattr(value, "serializer", None)))
    return found


def _names(keys: Any) -> list[str]:
    """Field or parameter names a client sent, never their values; odd names are dropped."""
    return sorted({str(k) for k in keys if _NAME.match(str(k))})


class AuditedMixin:
    """Put first in a DRF view's bases; set ``audit_resource`` (see the module docstring)."""

    audit_resource: ClassVar[str] = ""
    # The URL keyword naming the record (default: the view's lookup_url_kwarg / lookup_field).
    audit_lookup_kwarg: ClassVar[str | None] = None
    # What a POST to a named record attempts (``cancel``, ``complete``; default ``update``): a
    # refused attempt is audited with it, as its service would record the success.
    audit_verb: ClassVar[str] = "update"
    # Answers recorded as denied attempts (a view whose refusals are 409s may add 409).
    audit_denied_statuses: ClassVar[frozenset[int]] = DENIED_STATUSES

    request: Any
    kwargs: dict[str, Any]

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> HttpResponseBase:
        resource = resource_named(self.audit_resource)
        # A read changes nothing: its audit row commits on its own (one round trip, no
        # BEGIN/COMMIT), still before the response leaves. A write and its rows share one.
        writes = request.method not in SAFE_METHODS
        with access_scope() as scope:
            try:
                with transaction.atomic() if writes else nullcontext():
                    response: HttpResponseBase = super().dispatch(  # type: ignore[misc]
                        request, *args, **kwargs
                    )
                    if response.status_code < 400:
                        self._audit_success(scope, response)
                    elif writes:
                        transaction.set_rollback(True)
            except Exception as exc:
                self._audit_error(resource, exc)
                raise
            if response.status_code in self.audit_denied_statuses:
                self._audit_denied(resource, response)
            return response

    def get_object(self) -> Any:
        obj = super().get_object()  # type: ignore[misc]
        touch(obj)
        return obj

    def initial(self, request: Any, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        lookup = self._audit_lookup()
        if request.method == "DELETE" and lookup is not None:  # whose it was, before it goes
            self._audit_deleted_patient = self._audit_patient_of(self._audit_resource(), lookup)

    # --- What is recorded (override in a view for a different shape) --------------------------

    def audit_action(self) -> str:
        viewset_action = getattr(self, "action", None)
        if viewset_action:
            return _BY_VIEWSET_ACTION.get(viewset_action, viewset_action)
        method = self.request.method
        if method in ("GET", "HEAD"):
            return "read" if self._audit_lookup() is not None else "list"
        if method == "POST" and self._audit_lookup() is not None:
            return self.audit_verb  # an action on an existing record, not a creation
        return _BY_METHOD.get(method, method.lower())

    def audit_details(self) -> dict[str, Any]:
        """Context that holds no values: the route pattern, method, parameter names."""
        match = getattr(self.request, "resolver_match", None)
        details: dict[str, Any] = {
            "route": match.route if match is not None else "",
            "method": self.request.method,
        }
        params = _names(self.request.GET.keys())
        if params:
            details["params"] = params
        return details

    def audit_events(self, response: HttpResponseBase, scope: AccessScope) -> list[EventDraft]:
        """The events of a successful request (default: the protected objects it served)."""
        action = self.audit_action()
        details = self.audit_details()
        if action in ("create", "update") and isinstance(self.request.data, dict):
            details["fields"] = _names(self.request.data.keys())
        # What a service reported (``audit_access``) stands for its object: no second event.
        reported = {(d.resource_type, d.resource_id) for d in scope.drafts}
        items: dict[tuple[str, str], Touched] = {}
        rendered = (touched(o) for o in rendered_objects(getattr(response, "data", None)))
        for item in [*scope.objects, *rendered]:
            if item is not None and (item.resource, item.pk) not in reported:
                items.setdefault((item.resource, item.pk), item)
        drafts = list(scope.drafts)
        by_action: dict[str, list[Touched]] = {}
        for item in items.values():
            by_action.setdefault(item.action or action, []).append(item)
        for item_action, group in by_action.items():
            drafts.extend(access_drafts(objects=group, action=item_action, details=details))
        if not drafts:
            drafts.append(self._audit_by_url(action, details))
        return drafts

    # --- Internals ----------------------------------------------------------------------------

    def _audit_resource(self) -> ProtectedResource:
        return resource_named(self.audit_resource)

    def _audit_lookup(self) -> str | None:
        name = (
            self.audit_lookup_kwarg
            or getattr(self, "lookup_url_kwarg", None)
            or getattr(self, "lookup_field", None)
            or "pk"
        )
        value = getattr(self, "kwargs", {}).get(name)
        return None if value is None else str(value)

    def _audit_patient_of(self, resource: ProtectedResource, lookup: str) -> Any:
        """Whose record the URL names (an extra query, only when nothing else says)."""
        field_name = getattr(self, "lookup_field", None) or "pk"
        model = resource.model
        try:
            value = model._meta.get_field(
                model._meta.pk.name if field_name == "pk" else field_name  # type: ignore[union-attr]
            ).to_python(lookup)
            with transaction.atomic():
                obj = model._default_manager.filter(**{field_name: value}).first()
        except (ValidationError, ValueError, TypeError, DatabaseError):
            return None
        return resource.patient_id(obj) if obj is not None else None

    def _audit_by_url(self, action: str, details: dict[str, Any]) -> EventDraft:
        """No protected object was seen: record what the URL named (or an empty list)."""
        resource = self._audit_resource()
        lookup = self._audit_lookup()
        if lookup is None:
            return EventDraft(
                action=action, resource_type=resource.name, details={**details, "count": 0}
            )
        deleted = getattr(self, "_audit_deleted_patient", None)
        return EventDraft(
            action=action,
            resource_type=resource.name,
            resource_id=lookup,
            patient_id=deleted or self._audit_patient_of(resource, lookup),
            details=details,
        )

    def _audit_success(self, scope: AccessScope, response: HttpResponseBase) -> None:
        if self.request.method == "OPTIONS":
            return
        drafts = self.audit_events(response, scope)
        audit_record_many(drafts=drafts, origin=origin_of(request=self.request))

    def _audit_denied(self, resource: ProtectedResource, response: HttpResponseBase) -> None:
        origin = origin_of(request=self.request)
        data = getattr(response, "data", None)
        reason = str(data.get("code", "")) if isinstance(data, dict) else ""
        lookup = self._audit_lookup()
        patient_id = None
        if origin.actor_id is not None and lookup is not None:
            patient_id = self._audit_patient_of(resource, lookup)
        draft = EventDraft(
            action=self.audit_action(),
            outcome=Outcome.DENIED,
            resource_type=resource.name,
            resource_id=lookup or "",
            patient_id=patient_id,
            details={
                **self.audit_details(),
                "reason": reason,
                "status": response.status_code,
            },
        )
        with transaction.atomic():
            audit_record_many(drafts=[draft], origin=origin)

    def _audit_error(self, resource: ProtectedResource, exc: Exception) -> None:
        draft = EventDraft(
            action=self.audit_action(),
            outcome=Outcome.ERROR,
            resource_type=resource.name,
            resource_id=self._audit_lookup() or "",
            details={**self.audit_details(), "reason": type(exc).__name__, "status": 500},
        )
        try:
            with transaction.atomic():
                audit_record_many(drafts=[draft], origin=origin_of(request=self.request))
        except DatabaseError as failure:
            logger.warning("audit: a failed request could not be recorded (%s)", type(failure))
