"""AUD-17: only compliance officers (MFA, recent sign-in) read the trail; nobody edits it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db.models import QuerySet
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from api.models import TOTPDevice, User
from audit.chain import audit_seal
from audit.models import AuditEvent, Outcome
from audit.services import audit_record
from tests.api.mfa_support import code_at, enrol, wrong_code
from tests.audit.conftest import access_token
from tests.factories import DEFAULT_PASSWORD, admin_browser, api_client_for

Events = Callable[[], QuerySet[AuditEvent]]
EVENTS = "/api/v1/audit/events"
EXPORT = "/api/v1/audit/export?format=jsonl"
EXPORTS = (
    EXPORT,
    "/api/v1/audit/export/csv",
    "/api/v1/audit/export/jsonl",
    "/api/v1/audit/export/fhir",
    "/api/v1/audit/export/fhir/manifest?upto_seq=0",
)


@pytest.fixture
def one_access(therapist: User, client_user: User) -> AuditEvent:
    return audit_record(
        action="read",
        actor=therapist,
        resource_type="scheduling.booking",
        resource_id="b-1",
        patient_id=client_user.pk,
    )


def test_aud_17_compliance_officer_reads_the_trail_and_that_is_recorded(
    compliance_officer: User,
    compliance_api: APIClient,
    client_user: User,
    one_access: AuditEvent,
    new_events: Events,
) -> None:
    response = compliance_api.get(EVENTS, {"client": str(client_user.pk)})
    assert response.status_code == 200
    [item] = response.json()["results"]
    assert item["id"] == one_access.pk
    assert item["client_id"] == str(client_user.pk)
    assert (item["action"], item["resource_type"], item["seq"]) == (
        "read",
        "scheduling.booking",
        None,
    )
    [used] = new_events().filter(action="audit.log_used")
    assert (used.actor_id, used.patient_id, used.outcome) == (
        compliance_officer.pk,
        client_user.pk,
        Outcome.ALLOWED,
    )
    assert used.details["filters"] == {"patient_id": str(client_user.pk)}
    assert used.details["count"] == 1


def test_aud_17_sealed_events_show_their_place_in_the_chain(
    compliance_api: APIClient, one_access: AuditEvent
) -> None:
    audit_seal()
    response = compliance_api.get(EVENTS, {"resource": "scheduling.booking:b-1"})
    [item] = response.json()["results"]
    assert item["seq"] == one_access.seal.seq
    assert item["hash"] == one_access.seal.hash


def test_aud_17_filters_and_cursor_pages(
    compliance_api: APIClient, therapist: User, client_user: User
) -> None:
    for n in range(3):
        audit_record(action="read", actor=therapist, patient_id=client_user.pk, resource_id=str(n))
    audit_record(action="auth.login.failed", outcome=Outcome.DENIED)
    params = {"actor": str(therapist.pk), "action": "read", "outcome": "allowed", "page_size": 2}
    first = compliance_api.get(EVENTS, params).json()
    assert [e["resource_id"] for e in first["results"]] == ["2", "1"]
    second = compliance_api.get(first["next"]).json()
    assert [e["resource_id"] for e in second["results"]] == ["0"]
    assert second["next"] is None


@pytest.mark.parametrize(
    "query",
    [
        {"who": "x"},
        {"since": "2026-01-01T00:00:00"},  # no UTC offset
        {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
        {"client": "not-a-uuid"},
        {"outcome": "maybe"},
        {"action": "READ; DROP"},
    ],
)
def test_aud_17_bad_filters_are_refused_and_read_nothing(
    query: dict[str, str], compliance_api: APIClient, new_events: Events
) -> None:
    response = compliance_api.get(EVENTS, query)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert not new_events().filter(action="audit.log_used").exists()


@pytest.mark.parametrize("persona", ["therapist", "client_user", "admin_user", "outsider"])
@pytest.mark.parametrize("path", [EVENTS, *EXPORTS])
def test_aud_17_nobody_else_reads_or_exports_and_the_attempt_is_recorded(
    persona: str, path: str, request: pytest.FixtureRequest, new_events: Events
) -> None:
    user: User = request.getfixturevalue(persona)
    response = api_client_for(user).get(path)
    assert response.status_code == 403
    [event] = new_events()
    assert (event.actor_id, event.outcome, event.resource_type) == (
        user.pk,
        Outcome.DENIED,
        "audit.event",
    )
    assert event.details["reason"] == "permission_denied"


def test_aud_17_compliance_officer_without_mfa_is_refused(
    compliance_officer: User, new_events: Events
) -> None:
    response = api_client_for(compliance_officer, mfa=False).get(EVENTS)
    assert response.status_code == 403
    assert response.json()["code"] == "mfa_required"
    [event] = new_events()
    assert event.details["reason"] == "mfa_required"


def test_aud_17_compliance_officer_must_have_signed_in_recently(
    compliance_officer: User, new_events: Events
) -> None:
    stale = access_token(compliance_officer, signed_in_at=timezone.now() - timedelta(hours=2))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {stale}")
    for path in (EVENTS, *EXPORTS):
        response = api.get(path)
        assert response.status_code == 403
        assert response.json()["code"] == "reauthentication_required"
    assert [e.details["reason"] for e in new_events()] == ["reauthentication_required"] * 6
    fresh = access_token(compliance_officer, signed_in_at=timezone.now() - timedelta(minutes=5))
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {fresh}")
    assert api.get(EVENTS).status_code == 200


def test_aud_17_anonymous_callers_get_401_and_a_security_row(
    anon_api: APIClient, new_events: Events
) -> None:
    assert anon_api.get(EVENTS).status_code == 401
    [event] = new_events()
    assert (event.actor_label, event.outcome, event.patient_id) == ("anonymous", "denied", None)


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_aud_17_the_trail_cannot_be_edited_through_the_api(
    method: str, compliance_api: APIClient, one_access: AuditEvent
) -> None:
    for path in (EVENTS, f"{EVENTS}/{one_access.pk}", *EXPORTS):
        response = getattr(compliance_api, method)(path, {"action": "deleted"}, format="json")
        assert response.status_code in (404, 405)
    one_access.refresh_from_db()
    assert one_access.action == "read"


def test_aud_17_admin_shows_events_read_only_to_compliance_and_records_the_viewing(
    compliance_officer: User, one_access: AuditEvent, new_events: Events
) -> None:
    browser = admin_browser(compliance_officer)
    base = "/admin/audit/auditevent/"
    assert browser.get(base).status_code == 200
    page = browser.get(f"{base}{one_access.pk}/change/")
    assert page.status_code == 200
    assert b'name="_save"' not in page.content  # view-only: no save button
    assert browser.get(f"{base}add/").status_code == 403
    assert browser.post(f"{base}{one_access.pk}/change/", {"action": "x"}).status_code == 403
    assert browser.get(f"{base}{one_access.pk}/delete/").status_code == 403
    assert browser.post(f"{base}{one_access.pk}/delete/", {"post": "yes"}).status_code == 403
    assert browser.get("/admin/api/user/").status_code == 403  # nothing else is theirs
    one_access.refresh_from_db()
    assert one_access.action == "read"
    used = new_events().filter(action="audit.log_used")
    assert used.count() == 2
    assert {e.actor_id for e in used} == {compliance_officer.pk}
    assert all(e.details["via"] == "admin" for e in used)


def test_aud_17_an_admin_account_cannot_read_the_trail_in_the_admin(
    admin_user: User, one_access: AuditEvent, new_events: Events
) -> None:
    browser = admin_browser(admin_user)
    assert browser.get("/admin/api/user/").status_code == 200
    assert browser.get("/admin/audit/auditevent/").status_code == 403
    assert browser.get(f"/admin/audit/auditevent/{one_access.pk}/change/").status_code == 403
    assert not new_events().filter(action="audit.log_used").exists()


def test_mfa_11_the_admin_site_needs_the_second_factor(admin_user: User) -> None:
    """Invariant 5: a password-only admin session reaches no admin page."""
    browser = Client()
    browser.force_login(admin_user)
    response = browser.get("/admin/api/user/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_mfa_11_the_admin_sign_in_form_checks_the_code(admin_user: User) -> None:
    device = enrol(admin_user, now=timezone.now())
    form = {
        "username": admin_user.email,
        "password": DEFAULT_PASSWORD,
        "otp_device": device.persistent_id,
    }
    browser = Client()
    refused = browser.post(
        "/admin/login/", {**form, "otp_token": wrong_code(device, timezone.now())}
    )
    assert refused.status_code == 200  # the form again, with an error
    assert browser.get("/admin/api/user/").status_code == 302
    device.refresh_from_db()
    assert device.throttling_failure_count == 1
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_timestamp=None)
    signed_in = browser.post(
        "/admin/login/", {**form, "otp_token": code_at(device, timezone.now())}
    )
    assert signed_in.status_code == 302
    assert browser.get("/admin/api/user/").status_code == 200
