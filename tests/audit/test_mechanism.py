"""The one mechanism (``AuditedMixin``) on a protected resource: reads, lists, writes, denials.

Shown on client accounts served by the demo views (``tests.audit.demo``), the two view shapes
later apps use: DRF generic views and house-style views over selectors and services.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import QuerySet
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from api import tokens
from api.models import Role, User
from audit.db import EVENT_COLUMNS, db_now
from audit.models import AuditEvent, Outcome
from tests.audit.faults import audit_inserts_fail
from tests.factories import api_client_for, make_user

pytestmark = [pytest.mark.urls("tests.audit.urls"), pytest.mark.usefixtures("user_resource")]
Events = Callable[[], QuerySet[AuditEvent]]


def test_aud_01_read_records_who_what_when_where(
    therapist: User, client_user: User, therapist_api: APIClient, assign, new_events: Events
) -> None:
    """AUD-01: a read writes one row: who, what, when (DB clock), where, action, outcome."""
    assign(therapist, client_user)
    response = therapist_api.get(f"/demo/clients/{client_user.pk}", HTTP_USER_AGENT="TestAgent/1.0")
    assert response.status_code == 200
    [event] = new_events()
    assert event.action == "read"
    assert event.outcome == Outcome.ALLOWED
    assert (event.actor_id, event.actor_role, event.actor_label) == (therapist.pk, "therapist", "")
    assert (event.resource_type, event.resource_id) == ("api.user", str(client_user.pk))
    assert event.patient_id == client_user.pk
    assert event.source_ip == "127.0.0.1"
    assert event.user_agent == "TestAgent/1.0"
    assert event.request_id == response["X-Request-ID"]
    assert abs(db_now(connection) - event.occurred_at) < timedelta(seconds=5)
    assert event.details == {"route": "demo/clients/<uuid:pk>", "method": "GET"}


def test_aud_01_house_style_view_is_recorded_the_same_way(
    therapist: User, client_user: User, therapist_api: APIClient, assign, new_events: Events
) -> None:
    """AUD-01: a house-style view (selector + serializer) is recorded the same way."""
    assign(therapist, client_user)
    assert therapist_api.get(f"/demo/cards/{client_user.pk}").status_code == 200
    [event] = new_events()
    assert (event.action, event.patient_id, event.actor_id) == (
        "read",
        client_user.pk,
        therapist.pk,
    )


def test_aud_01_list_records_one_row_per_client_with_the_ids_returned(
    therapist: User, therapist_api: APIClient, assign, new_events: Events
) -> None:
    """AUD-01: a list writes one row per client, naming the ids it returned."""
    clients = [make_user(role=Role.CLIENT) for _ in range(3)]
    assign(therapist, *clients)
    response = therapist_api.get("/demo/clients")
    assert response.status_code == 200
    assert len(response.json()["results"]) == 3
    events = list(new_events())
    assert {e.patient_id for e in events} == {c.pk for c in clients}
    for event in events:
        assert event.action == "list"
        assert event.details["ids"] == [str(event.patient_id)]
        assert event.details["count"] == 1


def test_aud_01_an_empty_list_is_still_recorded_as_a_query(
    therapist_api: APIClient, new_events: Events
) -> None:
    """AUD-01: a list that returns nobody is still recorded, as a query."""
    assert therapist_api.get("/demo/clients").status_code == 200
    [event] = new_events()
    assert (event.action, event.patient_id, event.details["count"]) == ("list", None, 0)


def test_aud_01_a_service_reports_what_it_read_once(
    therapist: User, client_user: User, therapist_api: APIClient, assign, new_events: Events
) -> None:
    """AUD-01: what a service reports it read is recorded once."""
    assign(therapist, client_user)
    assert therapist_api.get(f"/demo/notes/{client_user.pk}").status_code == 200
    [event] = new_events()
    assert (event.action, event.patient_id) == ("read", client_user.pk)
    assert event.details["part"] == "summary"


def test_aud_01_update_records_field_names_never_values(
    therapist: User, client_user: User, therapist_api: APIClient, assign, new_events: Events
) -> None:
    """AUD-01, AUD-13: an update is recorded with field names, never values."""
    assign(therapist, client_user)
    response = therapist_api.patch(
        f"/demo/cards/{client_user.pk}", {"full_name": "Zebulon Quartermaine"}, format="json"
    )
    assert response.status_code == 200
    [event] = new_events()
    assert (event.action, event.patient_id) == ("update", client_user.pk)
    assert event.details["fields"] == ["full_name"]
    assert "Zebulon" not in str(event.details)


def test_aud_01_generic_update_and_create_are_recorded(
    therapist: User, client_user: User, therapist_api: APIClient, assign, new_events: Events
) -> None:
    """AUD-01: a generic view's update is recorded with the fields sent."""
    assign(therapist, client_user)
    response = therapist_api.patch(
        f"/demo/clients/{client_user.pk}", {"full_name": "Ann Other"}, format="json"
    )
    assert response.status_code == 200
    [event] = new_events()
    assert (event.action, event.patient_id, event.details["fields"]) == (
        "update",
        client_user.pk,
        ["full_name"],
    )


@pytest.mark.parametrize("route", ["clients", "cards"])
def test_aud_01_delete_names_the_client_whose_record_went(
    route: str, therapist: User, therapist_api: APIClient, assign, new_events: Events
) -> None:
    """AUD-01: a delete names the client whose record went."""
    client = make_user(role=Role.CLIENT)
    assign(therapist, client)
    assert therapist_api.delete(f"/demo/{route}/{client.pk}").status_code == 204
    assert not User.objects.filter(pk=client.pk).exists()
    [event] = new_events()
    assert (event.action, event.resource_id, event.patient_id) == (
        "delete",
        str(client.pk),
        client.pk,
    )


def test_aud_02_denied_access_to_another_therapists_client_is_recorded(
    therapist: User, other_therapist: User, client_user: User, assign, new_events: Events
) -> None:
    assign(therapist, client_user)
    response = api_client_for(other_therapist).get(f"/demo/clients/{client_user.pk}")
    assert response.status_code == 404
    [event] = new_events()
    assert event.outcome == Outcome.DENIED
    assert (event.action, event.actor_id) == ("read", other_therapist.pk)
    assert event.details["reason"] == "not_found"
    assert event.details["status"] == 404
    # Whose record was tried is known to the trail; the caller learns nothing of it.
    assert (event.resource_id, event.patient_id) == (str(client_user.pk), client_user.pk)
    assert client_user.email not in response.content.decode()


def test_aud_02_staff_without_mfa_are_refused_and_recorded(
    therapist: User, client_user: User, assign, new_events: Events
) -> None:
    assign(therapist, client_user)
    response = api_client_for(therapist, mfa=False).get(f"/demo/cards/{client_user.pk}")
    assert response.status_code == 403
    [event] = new_events()
    assert (event.outcome, event.details["reason"]) == (Outcome.DENIED, "mfa_required")


def test_aud_02_a_denied_write_changes_nothing_and_is_recorded(
    therapist: User, other_therapist: User, client_user: User, assign, new_events: Events
) -> None:
    assign(therapist, client_user)
    before = client_user.full_name
    response = api_client_for(other_therapist).patch(
        f"/demo/cards/{client_user.pk}", {"full_name": "Hijacked"}, format="json"
    )
    assert response.status_code == 404
    client_user.refresh_from_db()
    assert client_user.full_name == before
    [event] = new_events()
    assert (event.action, event.outcome, event.patient_id) == ("update", "denied", client_user.pk)


def test_aud_03_unauthenticated_request_is_a_security_row_without_client(
    client_user: User, anon_api: APIClient, new_events: Events
) -> None:
    response = anon_api.get(f"/demo/clients/{client_user.pk}")
    assert response.status_code == 401
    [event] = new_events()
    assert (event.actor_id, event.actor_label, event.outcome) == (None, "anonymous", "denied")
    assert event.details["reason"] == "not_authenticated"
    assert event.patient_id is None


def test_aud_03_expired_token_is_a_security_row_without_client(
    therapist: User, client_user: User, new_events: Events
) -> None:
    expired = tokens.mint(
        typ=tokens.ACCESS,
        sub=str(therapist.pk),
        role=therapist.role,
        now=timezone.now() - timedelta(hours=2),
        ttl_seconds=60,
        auth_time=timezone.now() - timedelta(hours=2),
        amr=["pwd", "otp", "mfa"],
        family_id=therapist.token_families.create(
            created_at=timezone.now(),
            last_refreshed_at=timezone.now(),
            current_jti="00000000-0000-4000-8000-000000000000",
            auth_time=timezone.now(),
        ).pk,
    )
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {expired}")
    assert api.get(f"/demo/cards/{client_user.pk}").status_code == 401
    [event] = new_events()
    assert (event.actor_id, event.patient_id, event.details["reason"]) == (
        None,
        None,
        "invalid_token",
    )


def test_aud_05_the_jwt_subject_and_its_session_are_the_actor(
    therapist: User, client_user: User, assign, new_events: Events
) -> None:
    """AUD-05: for a JWT-authenticated request, read or write, the actor is the token's
    subject (not None) and the session its sign-in."""
    assign(therapist, client_user)
    api = api_client_for(therapist)
    claims = tokens.decode(
        api._credentials["HTTP_AUTHORIZATION"].split()[1],
        expected_typ=tokens.ACCESS,
        now=timezone.now(),
    )
    url = f"/demo/cards/{client_user.pk}"
    assert api.get(url).status_code == 200
    assert api.patch(url, {"full_name": "Renamed"}, format="json").status_code == 200
    events = list(new_events())
    assert [e.action for e in events] == ["read", "update"]
    for event in events:
        assert (event.actor_id, event.actor_role, event.actor_label) == (
            therapist.pk,
            "therapist",
            "",
        )
        assert str(event.session_id) == claims.fam


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route", ["clients", "cards"])
def test_aud_07_a_failed_audit_insert_withholds_the_record(
    route: str, therapist: User, client_user: User, assign, new_events: Events
) -> None:
    """AUD-07: when the database refuses the audit row, the read answers 500 without the
    record (fail closed), on both view shapes."""
    assign(therapist, client_user)
    api = api_client_for(therapist)
    api.raise_request_exception = False
    with audit_inserts_fail():
        response = api.get(f"/demo/{route}/{client_user.pk}")
    assert response.status_code == 500
    body = response.content.decode()
    assert client_user.email not in body and client_user.full_name not in body
    assert not new_events().exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route", ["clients", "cards"])
def test_aud_07_a_failed_audit_insert_rolls_the_write_back(
    route: str, therapist: User, client_user: User, assign, new_events: Events
) -> None:
    """AUD-07: when the database refuses the audit row of a write, the change is not
    committed (no test transaction hides it here) and the answer is a 500 without the data."""
    assign(therapist, client_user)
    before = client_user.full_name
    api = api_client_for(therapist)
    api.raise_request_exception = False
    with audit_inserts_fail():
        response = api.patch(
            f"/demo/{route}/{client_user.pk}", {"full_name": "Changed Name"}, format="json"
        )
    assert response.status_code == 500
    assert "Changed Name" not in response.content.decode()
    client_user.refresh_from_db()
    assert client_user.full_name == before
    assert not new_events().exists()


def test_aud_20_a_list_of_100_clients_is_one_batch_insert(
    therapist: User, therapist_api: APIClient, assign, new_events: Events
) -> None:
    """AUD-20: a list of 100 clients is one batch INSERT, and no more queries than a list of 1."""
    clients = User.objects.bulk_create(
        [User(email=f"bulk-{n}@example.test", role=Role.CLIENT) for n in range(100)]
    )
    assign(therapist, *clients)

    def list_of(size: int) -> tuple[list[str], list[str]]:
        """One list call of ``size`` clients: its audit inserts, and its other queries."""
        with CaptureQueriesContext(connection) as queries:
            response = therapist_api.get(f"/demo/clients?page_size={size}")
        assert response.status_code == 200
        assert len(response.json()["results"]) == size
        sql = [q["sql"] for q in queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
        inserts = [q for q in sql if q.startswith("INSERT INTO audit_event")]
        return inserts, [q for q in sql if q not in inserts]

    one_insert, one_other = list_of(1)
    mark = new_events().count()
    inserts, other = list_of(100)
    # One INSERT statement, split only where SQLite caps the parameters of a statement (the
    # parts then share one transaction).
    per_statement = (connection.features.max_query_params or 65535) // len(EVENT_COLUMNS)
    assert len(one_insert) == 1
    assert len(inserts) == math.ceil(100 / per_statement)
    assert len(other) == len(one_other)  # nothing else grows with the page: no N+1
    assert new_events().count() - mark == 100
    assert {e.patient_id for e in new_events()[mark:]} == {c.pk for c in clients}


def test_a_refused_write_changes_nothing_and_records_no_access(
    therapist: User, client_user: User, therapist_api: APIClient, assign, new_events: Events
) -> None:
    assign(therapist, client_user)
    before = client_user.full_name
    response = therapist_api.patch(
        f"/demo/cards/{client_user.pk}", {"full_name": "X", "role": "admin"}, format="json"
    )
    assert response.status_code == 400
    client_user.refresh_from_db()
    assert (client_user.full_name, client_user.role) == (before, Role.CLIENT)
    assert not new_events().exists()


def test_aud_01_an_object_a_service_reported_is_not_recorded_twice(
    therapist: User, client_user: User, assign, new_events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AUD-01: a service that reports its own change (with details) stands for the rendered
    object: one row, not two."""
    from audit.services import audit_access
    from tests.audit import demo

    real_rename = demo.client_rename

    def reporting_rename(**kwargs: object) -> User:
        client = real_rename(**kwargs)
        audit_access(obj=client, action="update", details={"field_groups": ["identity"]})
        return client

    monkeypatch.setattr(demo, "client_rename", reporting_rename)
    assign(therapist, client_user)
    response = api_client_for(therapist).patch(
        f"/demo/cards/{client_user.pk}", {"full_name": "New"}, format="json"
    )
    assert response.status_code == 200
    [event] = new_events()
    assert event.details == {"field_groups": ["identity"]}
