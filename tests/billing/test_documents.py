"""Receipts, superbills, and the therapist's NPI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml
from django.conf import settings
from rest_framework.test import APIClient

from api.models import User
from audit.models import AuditEvent
from billing.documents import money, npi_is_valid
from billing.models import Payment, ProviderBilling
from scheduling.models import Booking, SessionType, TherapistProfile
from tests.billing.conftest import make_payment
from tests.clock import clock_instant
from tests.factories import api_client_for

NOW = clock_instant()  # the instant the views run at (tests/clock.py)
VALID_NPI = "1234567893"  # the CMS example number
RECEIPT_ROUTE = "api/v1/billing/payments/<uuid:payment_id>/receipt"


def paid(client: User, therapist: User, *, start: datetime, cpt: str = "90834") -> Payment:
    payment = make_payment(
        client=client, therapist=therapist, now=NOW, state="succeeded", captured_minor=12000
    )
    Booking.objects.filter(pk=payment.booking_id).update(
        start=start,
        end=start + timedelta(minutes=50),
        blocked_start=start,
        blocked_end=start + timedelta(minutes=50),
    )
    SessionType.objects.filter(pk=payment.booking.session_type_id).update(cpt_code=cpt)
    return payment


def test_npi_check_digit() -> None:
    assert npi_is_valid(VALID_NPI)
    assert not npi_is_valid("1234567890")
    assert not npi_is_valid("123456789")
    assert not npi_is_valid("12345678ab")


def test_money_is_formatted_from_minor_units() -> None:
    assert money(12000, "USD") == "120.00 USD"
    assert money(5, "EUR") == "0.05 EUR"
    assert money(5000, "JPY") == "5000 JPY"


def test_a_therapist_sets_a_valid_npi(therapist: User) -> None:
    api = api_client_for(therapist)
    assert (
        api.put("/api/v1/billing/provider", {"npi": "1234567890"}, format="json").status_code == 400
    )
    assert ProviderBilling.objects.count() == 0
    response = api.put("/api/v1/billing/provider", {"npi": VALID_NPI}, format="json")
    assert response.status_code == 200
    assert response.json() == {"npi": VALID_NPI, "payouts_enabled": False}
    assert ProviderBilling.objects.get(user=therapist).npi == VALID_NPI


def test_a_client_cannot_set_an_npi(client_user: User) -> None:
    response = api_client_for(client_user, mfa=False).put(
        "/api/v1/billing/provider", {"npi": VALID_NPI}, format="json"
    )
    assert response.status_code == 403


def test_a_receipt_for_the_client_and_the_therapist(client_user: User, therapist: User) -> None:
    """AUD-01: each receipt read is one ``read`` of its payment naming the client, recorded by
    the view's ``AuditedMixin``."""
    payment = paid(client_user, therapist, start=datetime(2026, 3, 10, 15, tzinfo=UTC))
    ProviderBilling.objects.create(user=therapist, npi=VALID_NPI, updated_at=NOW)
    url = f"/api/v1/billing/payments/{payment.pk}/receipt"

    receipt = api_client_for(client_user, mfa=False).get(url)
    assert receipt.status_code == 200
    body = receipt.json()
    assert body["number"] == f"R-{payment.pk.hex[:12].upper()}"
    assert body["date_of_service"] == "2026-03-10"  # 11:00 in New York
    assert body["provider"]["npi"] == VALID_NPI
    assert body["provider"]["licences"] == [f"US-NY LIC-{therapist.pk.hex[:8]}"]
    assert (body["amount_paid_minor"], body["net_minor"], body["currency"]) == (12000, 12000, "USD")
    assert api_client_for(therapist).get(url).status_code == 200
    reads = AuditEvent.objects.filter(resource_type="billing.payment").order_by("pk")
    assert [(r.action, r.outcome, r.resource_id, r.actor_id, r.patient_id) for r in reads] == [
        ("read", "allowed", str(payment.pk), client_user.pk, client_user.pk),
        ("read", "allowed", str(payment.pk), therapist.pk, client_user.pk),
    ]
    assert reads[0].details == {"route": RECEIPT_ROUTE, "method": "GET"}


def test_a_receipt_is_404_for_anyone_else_and_audited(
    client_user: User, outsider: User, therapist: User, other_therapist: User
) -> None:
    """AUD-02: each refusal is one ``denied`` row naming the payment and, since the caller is
    authenticated, its client (recorded, never disclosed to the caller)."""
    payment = paid(client_user, therapist, start=datetime(2026, 3, 10, 15, tzinfo=UTC))
    url = f"/api/v1/billing/payments/{payment.pk}/receipt"
    assert api_client_for(outsider, mfa=False).get(url).status_code == 404
    assert api_client_for(other_therapist).get(url).status_code == 404
    denied = AuditEvent.objects.filter(resource_type="billing.payment").order_by("pk")
    assert [(e.action, e.outcome, e.resource_id, e.actor_id, e.patient_id) for e in denied] == [
        ("read", "denied", str(payment.pk), outsider.pk, client_user.pk),
        ("read", "denied", str(payment.pk), other_therapist.pk, client_user.pk),
    ]
    assert denied[0].details == {
        "route": RECEIPT_ROUTE,
        "method": "GET",
        "reason": "not_found",
        "status": 404,
    }


def test_aud_03_an_anonymous_receipt_request_is_401_and_names_no_client(
    client_user: User, therapist: User
) -> None:
    """AUD-03: without a token the answer is 401 and one denied row, with no lookup of whose
    payment the URL names."""
    payment = paid(client_user, therapist, start=datetime(2026, 3, 10, 15, tzinfo=UTC))
    response = APIClient().get(f"/api/v1/billing/payments/{payment.pk}/receipt")
    assert response.status_code == 401
    denied = AuditEvent.objects.get(resource_type="billing.payment")
    assert (denied.outcome, denied.actor_id, denied.actor_label, denied.patient_id) == (
        "denied",
        None,
        "anonymous",
        None,
    )


def test_an_unpaid_payment_has_no_receipt(client_user: User, therapist: User) -> None:
    unpaid = make_payment(client=client_user, therapist=therapist, now=NOW)
    url = f"/api/v1/billing/payments/{unpaid.pk}/receipt"
    assert api_client_for(client_user, mfa=False).get(url).status_code == 404


def test_a_printable_receipt_escapes_what_it_prints(client_user: User, therapist: User) -> None:
    """AUD-01: the printable receipt is audited like the receipt; its HTML is escaped."""
    payment = paid(client_user, therapist, start=datetime(2026, 3, 10, 15, tzinfo=UTC))
    TherapistProfile.objects.filter(user=therapist).update(display_name="<script>x</script>")
    response = api_client_for(client_user, mfa=False).get(
        f"/api/v1/billing/payments/{payment.pk}/receipt/print"
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert response["Cache-Control"] == "no-store"
    html = response.content.decode()
    assert "120.00 USD" in html
    assert "<script>x</script>" not in html
    assert "&lt;script&gt;" in html
    [read] = AuditEvent.objects.filter(resource_type="billing.payment")
    assert (read.action, read.outcome, read.resource_id, read.actor_id, read.patient_id) == (
        "read",
        "allowed",
        str(payment.pk),
        client_user.pk,
        client_user.pk,
    )
    assert read.details["route"] == f"{RECEIPT_ROUTE}/print"


def test_a_superbill_lists_the_months_paid_sessions(
    client_user: User, therapist: User, other_therapist: User
) -> None:
    """AUD-01, AUD-20: a superbill read is one ``list`` row naming the client, the month and
    the payments it shows."""
    ProviderBilling.objects.create(user=therapist, npi=VALID_NPI, updated_at=NOW)
    first = paid(client_user, therapist, start=datetime(2026, 3, 3, 15, tzinfo=UTC))
    # 02:00 UTC on 1 April is still 31 March in New York: a March session.
    last = paid(
        client_user, other_therapist, start=datetime(2026, 4, 1, 2, tzinfo=UTC), cpt="90837"
    )
    paid(client_user, therapist, start=datetime(2026, 4, 2, 15, tzinfo=UTC))  # April
    refunded = paid(client_user, therapist, start=datetime(2026, 3, 20, 15, tzinfo=UTC))
    Payment.objects.filter(pk=refunded.pk).update(amount_refunded_minor=12000, state="refunded")
    partly = paid(client_user, therapist, start=datetime(2026, 3, 24, 15, tzinfo=UTC))
    Payment.objects.filter(pk=partly.pk).update(
        amount_refunded_minor=2000, state="partially_refunded"
    )

    response = api_client_for(client_user, mfa=False).get("/api/v1/billing/superbills/2026/3")
    assert response.status_code == 200
    bill = response.json()
    assert bill["month"] == "2026-03"
    assert bill["client_name"] == client_user.full_name
    assert [
        (
            line["date_of_service"],
            line["cpt_code"],
            line["amount_paid_minor"],
            line["provider"]["npi"],
        )
        for line in bill["lines"]
    ] == [
        ("2026-03-03", "90834", 12000, VALID_NPI),
        ("2026-03-24", "90834", 10000, VALID_NPI),
        ("2026-03-31", "90837", 12000, ""),
    ]
    assert bill["totals_minor"] == {"USD": 34000}
    audit = AuditEvent.objects.get(resource_type="billing.payment")
    assert (audit.action, audit.actor_id, audit.patient_id, audit.details) == (
        "list",
        client_user.pk,
        client_user.pk,
        {
            "route": "api/v1/billing/superbills/<int:year>/<int:month>",
            "method": "GET",
            "month": "2026-03",
            "ids": [str(first.pk), str(partly.pk), str(last.pk)],
            "count": 3,
        },
    )


def test_a_printable_superbill(client_user: User, therapist: User) -> None:
    """AUD-01: the printable superbill is one ``list`` row naming the client and its payment."""
    payment = paid(client_user, therapist, start=datetime(2026, 3, 3, 15, tzinfo=UTC))
    response = api_client_for(client_user, mfa=False).get("/api/v1/billing/superbills/2026/3/print")
    assert response.status_code == 200
    read = AuditEvent.objects.get(resource_type="billing.payment")
    assert (read.action, read.outcome, read.resource_id, read.patient_id) == (
        "list",
        "allowed",
        str(payment.pk),
        client_user.pk,
    )
    assert (read.details["month"], read.details["ids"]) == ("2026-03", [str(payment.pk)])
    html = response.content.decode()
    assert "90834" in html and "120.00 USD" in html and "2026-03-03" in html


@pytest.mark.parametrize(
    ("path", "blamed"),
    [("2026/13", {"month"}), ("2026/0", {"month"}), ("1999/5", {"year"}), ("9999/12", {"year"})]
    + [("9999/13", {"year", "month"})],
)
def test_a_superbill_for_no_month_is_400(client_user: User, path: str, blamed: set) -> None:
    """The problem names the part that is wrong (a bad year was blamed on the month)."""
    response = api_client_for(client_user, mfa=False).get(f"/api/v1/billing/superbills/{path}")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert {e["field"] for e in errors} == blamed
    assert {e["code"] for e in errors} == {"invalid"}


def test_api_04_the_schema_bounds_a_superbill_month_as_the_server_does() -> None:
    """API-04: a generator that keeps to the document asks for real months only."""
    document = yaml.safe_load((settings.BASE_DIR / "openapi.yaml").read_text())
    bill = "/api/v1/billing/superbills/{year}/{month}"
    for path in (bill, f"{bill}/print"):
        bounds = {
            p["name"]: (p["schema"]["minimum"], p["schema"]["maximum"])
            for p in document["paths"][path]["get"]["parameters"]
            if p["in"] == "path"
        }
        assert bounds == {"year": (2000, 2100), "month": (1, 12)}


def test_superbills_are_for_clients(therapist: User) -> None:
    assert api_client_for(therapist).get("/api/v1/billing/superbills/2026/3").status_code == 403
