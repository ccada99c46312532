"""The route walk: every endpoint that returns or changes a protected model is audited."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from rest_framework.test import APIRequestFactory

from audit.coverage import api_operations, unaudited, unaudited_admin_pages
from tests.audit.demo import ClientCardApi

# Routes that change protected records with no user, so they cannot be AuditedMixin views; each
# with the reason and how its effects are audited instead. Keep it short: every entry is
# reviewed, and one that the walk would no longer flag fails below (no stale exemptions).
SYSTEM_ROUTES = {
    ("POST", "/api/v1/billing/webhooks/stripe"): (
        "Stripe's webhook: no user and no session, authenticated by Stripe's signature over the "
        "raw body. It changes payments and saved cards; billing's services audit each effect as "
        "a system event in the event's transaction (billing.payment.state_changed, "
        "billing.payment_method.saved, billing.webhook.*), and a bad signature as "
        "billing.webhook.rejected."
    ),
}


def test_every_route_serving_a_protected_model_is_audited() -> None:
    """Walks every URL of the project: a later endpoint that serves a model declared with
    ``audit.registry.protected`` without ``AuditedMixin`` (or an admin page of one without
    ``AuditedModelAdmin``) fails here, naming the route. Only the system routes named above
    are exempt."""
    assert unaudited(exempt=SYSTEM_ROUTES) == []


def test_each_system_route_exemption_is_needed_and_explained() -> None:
    """An exemption is for a route the walk flags, i.e. one that does touch a protected model:
    a route renamed or made audited must leave the list."""
    flagged = {(op.method, op.path): op for op in api_operations() if op.problem}
    assert set(flagged) == set(SYSTEM_ROUTES)
    assert flagged["POST", "/api/v1/billing/webhooks/stripe"].protected == (
        "billing.payment",
        "billing.payment_method",
    )
    assert all(len(reason) > 40 for reason in SYSTEM_ROUTES.values())


def test_the_billing_endpoints_are_seen_as_protected_and_audited() -> None:
    """Payments are PHI (a payment for a session says its client is in therapy) and saved
    cards are tied to a client in care: every billing route serving them is seen by the walk
    and is an ``AuditedMixin`` view. Dropping the mixin (or the ``audit_models`` that tells the
    walk what a document view renders) from any of them fails here or above."""
    operations = {(op.method, op.path): op for op in api_operations()}
    expected = {
        ("POST", "/api/v1/bookings/{booking_id}/pay"): ("billing.payment",),
        ("GET", "/api/v1/billing/payments"): ("billing.payment",),
        ("GET", "/api/v1/billing/payments/{payment_id}/receipt"): ("billing.payment",),
        ("GET", "/api/v1/billing/payments/{payment_id}/receipt/print"): ("billing.payment",),
        ("GET", "/api/v1/billing/superbills/{year}/{month}"): ("billing.payment",),
        ("GET", "/api/v1/billing/superbills/{year}/{month}/print"): ("billing.payment",),
        ("GET", "/api/v1/billing/payment-methods"): ("billing.payment_method",),
        ("DELETE", "/api/v1/billing/payment-methods/{method_id}"): ("billing.payment_method",),
    }
    for key, protected in expected.items():
        assert (operations[key].protected, operations[key].problem) == (protected, ""), key


def test_the_audit_endpoints_are_seen_as_protected_and_audited() -> None:
    operations = {(op.method, op.path): op for op in api_operations()}
    paths = (
        "/api/v1/audit/events",
        "/api/v1/audit/export",
        "/api/v1/audit/export/csv",
        "/api/v1/audit/export/jsonl",
        "/api/v1/audit/export/fhir",
        "/api/v1/audit/export/fhir/manifest",
        "/api/v1/me/access-log",
    )
    for path in paths:
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
