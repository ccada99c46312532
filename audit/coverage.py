"""Which routes serve protected models, and are they audited? (the route-walking test's engine)

Every API operation is enumerated the way the OpenAPI schema is (drf-spectacular's generator),
and the models it reads or writes are found in what the schema knows of it: the view's
``queryset``, its request and response serializers (``serializer_class`` or ``extend_schema``),
nested serializers included, and an explicit ``audit_models`` tuple on the view for anything
else. An operation touching a model of ``audit.registry`` must be an ``AuditedMixin`` view
declaring a registered resource. Admin pages of protected models must use
``AuditedModelAdmin``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib import admin
from django.core.exceptions import ImproperlyConfigured
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.plumbing import ComponentRegistry
from drf_spectacular.settings import spectacular_settings
from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer
from rest_framework import serializers

from audit.admin import AuditedModelAdmin
from audit.mixins import AuditedMixin
from audit.registry import resource_named, resource_of


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    view: str
    protected: tuple[str, ...]  # the protected resources it touches
    problem: str  # why it is not properly audited ("" when it is)


def _serializer_models(item: Any, seen: set[int]) -> set[type]:
    """Models rendered or parsed by a schema annotation (serializer, dict, response...)."""
    if item is None or id(item) in seen:
        return set()
    seen.add(id(item))
    if isinstance(item, dict):
        return set().union(*(_serializer_models(v, seen) for v in item.values()))
    if isinstance(item, list | tuple):
        return set().union(*(_serializer_models(v, seen) for v in item))
    if isinstance(item, OpenApiResponse):
        return _serializer_models(item.response, seen)
    if isinstance(item, PolymorphicProxySerializer):
        return _serializer_models(item.serializers, seen)
    if isinstance(item, serializers.ListSerializer):
        return _serializer_models(item.child, seen)
    serializer = item if isinstance(item, serializers.BaseSerializer) else None
    if serializer is None and isinstance(item, type) and issubclass(item, serializers.Serializer):
        try:
            serializer = item()
        except TypeError:
            return set()
    if serializer is None:
        return set()
    found: set[type] = set()
    model = getattr(getattr(serializer, "Meta", None), "model", None)
    if model is not None:
        found.add(model)
    if isinstance(serializer, serializers.Serializer):
        for field in serializer.fields.values():
            found |= _serializer_models(field, seen)
    return found


def _touched_models(view: Any) -> set[type]:
    found: set[type] = set(getattr(view, "audit_models", ()))
    queryset = getattr(view, "queryset", None)
    if queryset is not None:
        found.add(queryset.model)
    schema = view.schema
    for getter in ("get_request_serializer", "get_response_serializers"):
        try:
            annotation = getattr(schema, getter)()
        except (AssertionError, AttributeError, TypeError, ImproperlyConfigured):
            continue  # no serializer declared: the other sources still apply
        found |= _serializer_models(annotation, set())
    return found


def _problem(view: Any, protected: Iterable[str]) -> str:
    if not protected:
        return ""
    if not isinstance(view, AuditedMixin):
        return "serves a protected model without AuditedMixin"
    try:
        resource_named(view.audit_resource)
    except ImproperlyConfigured:
        return f"audit_resource {view.audit_resource!r} is not a registered protected resource"
    return ""


def api_operations(urlconf: Any = None) -> list[Operation]:
    generator = SchemaGenerator(urlconf=urlconf)
    generator._initialise_endpoints()
    registry = ComponentRegistry()
    operations = []
    for path, path_regex, method, view in generator._get_paths_and_endpoints():
        view.request = spectacular_settings.GET_MOCK_REQUEST(method, path, view, None)
        schema = view.schema
        schema.registry, schema.path, schema.path_regex = registry, path, path_regex
        schema.path_prefix, schema.method = "", method.upper()
        touched = sorted(
            {r.name for m in _touched_models(view) if (r := resource_of(m)) is not None}
        )
        operations.append(
            Operation(
                method=method.upper(),
                path=path,
                view=f"{type(view).__module__}.{type(view).__qualname__}",
                protected=tuple(touched),
                problem=_problem(view, touched),
            )
        )
    return operations


def unaudited_admin_pages() -> list[str]:
    return sorted(
        f"admin: {model._meta.label} uses {type(model_admin).__name__}"
        for model, model_admin in admin.site._registry.items()
        if resource_of(model) is not None and not isinstance(model_admin, AuditedModelAdmin)
    )


def unaudited(urlconf: Any = None, exempt: Collection[tuple[str, str]] = ()) -> list[str]:
    """Every route serving a protected model without being audited, as readable lines.

    ``exempt`` names ``(method, path)`` operations that are not to be reported: system routes
    with no user (the Stripe webhook), whose effects their services audit as system events.
    The caller keeps that list, each entry with its reason (``tests/audit/test_coverage.py``).
    """
    problems = [
        f"{op.method} {op.path} ({op.view}): {op.problem} [{', '.join(op.protected)}]"
        for op in api_operations(urlconf)
        if op.problem and (op.method, op.path) not in exempt
    ]
    return problems + unaudited_admin_pages()
