"""Accounting of disclosures: a client lists who accessed their records."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection
from django.db.models import QuerySet
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from api.models import Role, User
from audit.models import AuditEvent, Outcome
from audit.services import audit_record
from tests.factories import api_client_for, make_user

Events = Callable[[], QuerySet[AuditEvent]]
ACCESS_LOG = "/api/v1/me/access-log"
pytestmark = pytest.mark.django_db


def _read(actor: User | None, patient: User, **extra: object) -> None:
    audit_record(
        action="read",
        actor=actor,
        actor_label="" if actor else "system",
        resource_type="scheduling.booking",
        resource_id="b-1",
        patient_id=patient.pk,
        **extra,
    )


def test_a_client_sees_who_accessed_their_records_staff_by_name_and_role(
    client_user: User, client_api: APIClient, therapist: User, compliance_officer: User
) -> None:
    _read(therapist, client_user)
    _read(compliance_officer, client_user)
    _read(None, client_user)
    response = client_api.get(ACCESS_LOG)
    assert response.status_code == 200
    entries = response.json()["results"]
    assert [e["accessed_by"] for e in entries] == [
        {"name": None, "role": "system"},
        {"name": compliance_officer.full_name, "role": "compliance_officer"},
        {"name": therapist.full_name, "role": "therapist"},
    ]
    assert {e["action"] for e in entries} == {"read"}
    assert {e["resource_type"] for e in entries} == {"scheduling.booking"}
    assert all(e["occurred_at"].endswith("Z") or "+00:00" in e["occurred_at"] for e in entries)


def test_the_access_log_leaves_out_own_actions_denials_and_other_clients(
    client_user: User, client_api: APIClient, outsider: User, therapist: User
) -> None:
    _read(client_user, client_user)  # their own reading
    _read(therapist, outsider)  # someone else's record
    _read(therapist, client_user, outcome=Outcome.DENIED)  # an attempt that was refused
    assert client_api.get(ACCESS_LOG).json()["results"] == []


def test_other_clients_are_shown_by_role_only(client_user: User, client_api: APIClient) -> None:
    other = make_user(role=Role.CLIENT, full_name="Private Person")
    _read(other, client_user)
    [entry] = client_api.get(ACCESS_LOG).json()["results"]
    assert entry["accessed_by"] == {"name": None, "role": "client"}


def test_reading_the_access_log_is_recorded_for_the_client(
    client_user: User, client_api: APIClient, new_events: Events
) -> None:
    assert client_api.get(ACCESS_LOG).status_code == 200
    [event] = new_events()
    assert (event.action, event.actor_id, event.patient_id) == (
        "audit.disclosures_read",
        client_user.pk,
        client_user.pk,
    )


def test_the_access_log_costs_the_same_queries_however_many_staff(
    client_user: User, client_api: APIClient
) -> None:
    _read(make_user(role=Role.THERAPIST), client_user)
    with CaptureQueriesContext(connection) as one:
        client_api.get(ACCESS_LOG)
    for _ in range(4):
        _read(make_user(role=Role.THERAPIST), client_user)
    with CaptureQueriesContext(connection) as five:
        assert len(client_api.get(ACCESS_LOG).json()["results"]) == 5
    assert len(five) == len(one)


def test_the_access_log_needs_a_signed_in_user(anon_api: APIClient) -> None:
    assert anon_api.get(ACCESS_LOG).status_code == 401


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_the_access_log_is_read_only(method: str, client_user: User) -> None:
    api = api_client_for(client_user, mfa=False)
    assert getattr(api, method)(ACCESS_LOG, {}, format="json").status_code == 405
