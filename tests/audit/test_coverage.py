"""The route walk: every endpoint that returns or changes a protected model is audited."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from rest_framework.test import APIRequestFactory

from audit.coverage import api_operations, unaudited, unaudited_admin_pages
from tests.audit.demo import ClientCardApi


def test_every_route_serving_a_protected_model_is_audited() -> None:
    """Walks every URL of the project: a later endpoint that serves a model declared with
    ``audit.registry.protected`` without ``AuditedMixin`` (or an admin page of one without
    ``AuditedModelAdmin``) fails here, naming the route."""
    assert unaudited() == []


def test_the_audit_endpoints_are_seen_as_protected_and_audited() -> None:
    operations = {(op.method, op.path): op for op in api_operations()}
    for path in ("/api/v1/audit/events", "/api/v1/audit/export", "/api/v1/me/access-log"):
        operation = operations["GET", path]
        assert operation.protected == ("audit.event",)
        assert operation.problem == ""


@pytest.mark.usefixtures("user_resource")
def test_the_walk_names_an_endpoint_that_serves_a_protected_model_unaudited() -> None:
    assert [op for op in api_operations("tests.audit.urls") if op.problem] == []
    [problem] = [op for op in api_operations("tests.audit.urls_unaudited") if op.problem]
    assert (problem.method, problem.path) == ("GET", "/demo/raw/{id}")
    assert problem.protected == ("api.user",)
    assert "without AuditedMixin" in problem.problem
    # The demo views are all found, whatever their shape (generic, APIView, service-reported).
    audited = {op.path for op in api_operations("tests.audit.urls") if op.protected}
    assert audited == {
        "/demo/clients",
        "/demo/clients/{id}",
        "/demo/cards/{id}",
        "/demo/notes/{id}",
    }


@pytest.mark.usefixtures("user_resource")
def test_the_walk_names_admin_pages_of_protected_models_that_are_not_audited() -> None:
    assert unaudited_admin_pages() == ["admin: api.User uses UserAdmin"]


def test_a_view_naming_an_unregistered_resource_fails_closed() -> None:
    class Misdeclared(ClientCardApi):
        audit_resource = "nothing.registered"

    request = APIRequestFactory().get("/demo/cards/x")
    with pytest.raises(ImproperlyConfigured, match="not a protected resource"):
        Misdeclared.as_view()(request, pk="00000000-0000-4000-8000-000000000000")
