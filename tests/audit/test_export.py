"""AUD-14, AUD-15, AUD-13: exports parse back, check offline, hold no PHI, neutralise formulas."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from django.db import connection
from django.db.models import QuerySet
from django.test import RequestFactory
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent
from fhir.resources.R4B.provenance import Provenance as FhirProvenance
from rest_framework.test import APIClient

from api.models import Role, User
from audit.canonical import content_hash, link_hash
from audit.chain import audit_seal, chain_head
from audit.export import COLUMNS, export_chunks, export_plan
from audit.models import AuditEvent, AuditSeal
from audit.selectors import EventFilters
from audit.services import audit_record
from audit.signing import verify as signature_valid
from tests.factories import make_user

Events = Callable[[], QuerySet[AuditEvent]]
pytestmark = pytest.mark.django_db
rf = RequestFactory()


def _split(body: bytes) -> tuple[bytes, bytes]:
    """(the rows, the manifest line): the manifest is always the last line."""
    cut = body.rstrip(b"\n").rfind(b"\n") + 1
    return body[:cut], body[cut:]


def _check_manifest(manifest: dict[str, Any], rows: bytes, fmt: str) -> None:
    assert signature_valid(manifest)
    assert manifest["format"] == fmt
    assert manifest["body_sha256"] == hashlib.sha256(rows).hexdigest()
    assert not signature_valid({**manifest, "count": manifest["count"] + 1})


def _check_record(record: dict[str, Any]) -> None:
    """A row checks offline: its content hash, then its link."""
    row = {
        **record,
        "id": record["event_id"],
        "occurred_at": datetime.fromisoformat(record["occurred_at"]),
    }
    assert content_hash(row) == record["content_hash"]
    sealed_at = datetime.fromisoformat(record["sealed_at"])
    link = link_hash(
        prev_hash=record["prev_hash"],
        seq=record["seq"],
        content_hash=record["content_hash"],
        sealed_at=sealed_at,
    )
    assert link == record["hash"]


def _export(api: APIClient, **params: str) -> tuple[Any, bytes]:
    response = api.get("/api/v1/audit/export", params)
    body = b"".join(response.streaming_content) if response.status_code == 200 else b""
    return response, body


@pytest.fixture
def trail(therapist: User, client_user: User, outsider: User) -> dict[str, User]:
    request = rf.get("/", REMOTE_ADDR="198.51.100.20", HTTP_USER_AGENT='=HYPERLINK("http://x")')
    for patient in (client_user, client_user, outsider):
        audit_record(
            action="read",
            actor=therapist,
            request=request,
            resource_type="api.user",
            resource_id=str(patient.pk),
            patient_id=patient.pk,
            details={"route": "demo/clients/<uuid:pk>"},
        )
    audit_record(action="auth.login.failed", outcome="denied", details={"reason": "@SUM(A1)"})
    return {"therapist": therapist, "client": client_user, "outsider": outsider}


@pytest.mark.usefixtures("trail")
def test_aud_14_json_lines_export_parses_back_and_checks_offline(
    compliance_api: APIClient,
) -> None:
    response, body = _export(compliance_api, format="jsonl")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    rows, last = _split(body)
    manifest = json.loads(last)["manifest"]
    _check_manifest(manifest, rows, "jsonl")
    records = [json.loads(line) for line in rows.splitlines()]
    assert [r["seq"] for r in records] == list(range(records[0]["seq"], records[-1]["seq"] + 1))
    assert (manifest["count"], manifest["first_seq"], manifest["last_seq"]) == (
        len(records),
        records[0]["seq"],
        records[-1]["seq"],
    )
    head_seq, head_hash = response["X-Audit-Chain-Head"].split(":")
    assert manifest["head"] == {"seq": int(head_seq), "hash": head_hash}
    assert records[-1]["hash"] == head_hash  # the whole trail ends at the signed head
    for before, record in zip([None, *records], records, strict=False):
        _check_record(record)
        if before is not None:
            assert record["prev_hash"] == before["hash"]
        assert record["occurred_at"].endswith("Z")


def test_aud_14_csv_export_parses_back(compliance_api: APIClient, trail: dict[str, User]) -> None:
    response, body = _export(compliance_api, format="csv", client=str(trail["client"].pk))
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows, last = _split(body)
    [manifest_row] = list(csv.reader(io.StringIO(last.decode())))
    assert manifest_row[0] == "#manifest"
    manifest = json.loads(manifest_row[1])
    _check_manifest(manifest, rows, "csv")
    table = list(csv.DictReader(io.StringIO(rows.decode())))
    assert list(table[0]) == list(COLUMNS)
    assert len(table) == manifest["count"] == 2
    assert {r["patient_id"] for r in table} == {str(trail["client"].pk)}


def test_aud_14_fhir_export_validates_as_r4_audit_events(
    compliance_api: APIClient, trail: dict[str, User]
) -> None:
    response, body = _export(compliance_api, format="fhir", actor=str(trail["therapist"].pk))
    assert response["Content-Type"] == "application/fhir+ndjson"
    rows, last = _split(body)
    resources = [json.loads(line) for line in rows.splitlines()]
    assert len(resources) == 3
    for resource in resources:
        event = FhirAuditEvent.model_validate(resource)
        assert event.action == "R"
        assert event.outcome == "0"
        assert event.agent[0].who.identifier.value == str(trail["therapist"].pk)
        assert event.agent[0].network.address == "198.51.100.20"
        assert event.recorded == datetime.fromisoformat(resource["recorded"])
    patients = {r["entity"][0]["what"]["identifier"]["value"] for r in resources}
    assert patients == {str(trail["client"].pk), str(trail["outsider"].pk)}
    provenance = FhirProvenance.model_validate(json.loads(last))
    manifest = json.loads(provenance.signature[0].data)  # the model decodes base64Binary
    raw = json.loads(last)["signature"][0]["data"]
    assert json.loads(base64.b64decode(raw)) == manifest
    _check_manifest(manifest, rows, "fhir")
    assert manifest["count"] == 3


def test_aud_14_filters_by_client_actor_time_and_outcome(
    compliance_api: APIClient, trail: dict[str, User]
) -> None:
    audit_seal()
    first = AuditEvent.objects.filter(patient_id=trail["client"].pk).order_by("id").first()
    cases = {
        "client": ({"client": str(trail["client"].pk)}, 2),
        "actor": ({"actor": str(trail["therapist"].pk)}, 3),
        "outcome": ({"outcome": "denied", "since": first.occurred_at.isoformat()}, 1),
        "window": ({"since": first.occurred_at.isoformat(), "action": "read"}, 3),
        "empty": (
            {
                "until": first.occurred_at.isoformat(),
                "action": "read",
                "client": str(trail["client"].pk),
            },
            0,
        ),
    }
    for name, (params, expected) in cases.items():
        response, body = _export(compliance_api, format="jsonl", **params)
        assert response.status_code == 200, name
        rows, last = _split(body)
        manifest = json.loads(last)["manifest"]
        assert manifest["count"] == expected == len(rows.splitlines()), name
        assert manifest["filters"], name


def test_aud_14_the_export_records_itself(
    compliance_officer: User, compliance_api: APIClient, trail: dict[str, User], new_events: Events
) -> None:
    response, _ = _export(compliance_api, format="csv", client=str(trail["client"].pk))
    [event] = new_events().filter(action="audit.export")
    assert event.actor_id == compliance_officer.pk
    assert event.patient_id == trail["client"].pk
    assert event.details["format"] == "csv"
    assert event.details["filters"] == {"patient_id": str(trail["client"].pk)}
    assert event.details["upto_seq"] == int(response["X-Audit-Chain-Head"].split(":")[0])


def test_aud_14_pages_stay_stable_while_events_are_appended() -> None:
    for n in range(7):
        audit_record(action="test.page", details={"n": n})
    plan = export_plan(fmt="jsonl", filters=EventFilters(action="test.page"))
    chunks = export_chunks(plan, batch_size=2)
    body = next(chunks)
    for n in range(3):  # written and sealed mid-export: beyond the planned head, left out
        audit_record(action="test.page", details={"n": 100 + n})
    audit_seal()
    body += b"".join(chunks)
    rows, last = _split(body)
    seqs = [json.loads(line)["seq"] for line in rows.splitlines()]
    assert len(seqs) == len(set(seqs)) == 7 == json.loads(last)["manifest"]["count"]
    assert seqs == sorted(seqs)
    assert max(seqs) <= plan.head.seq


@pytest.mark.postgres
def test_aud_14_stable_pagination_over_more_than_100k_rows() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_event (action, actor_role, actor_label, resource_type, "
            "resource_id, outcome, source_ip, user_agent, request_id, details) "
            "SELECT 'read', 'therapist', '', 'api.user', g::text, 'allowed', '', '', '', '{}' "
            "FROM generate_series(1, 120000) AS g"
        )
    audit_seal()
    plan = export_plan(fmt="jsonl", filters=EventFilters(resource_type="api.user"))
    count, previous = 0, 0
    for chunk in export_chunks(plan, batch_size=5000):
        for line in chunk.splitlines():
            record = json.loads(line)
            if "manifest" in record:
                assert record["manifest"]["count"] == count
                continue
            assert record["seq"] > previous
            previous, count = record["seq"], count + 1
    assert count >= 120_000
    assert count == AuditSeal.objects.filter(event__resource_type="api.user").count()


def test_aud_15_csv_cells_that_could_be_formulas_are_neutralised(
    compliance_api: APIClient, trail: dict[str, User]
) -> None:
    audit_record(
        action="test.csv",
        request=rf.get("/", HTTP_USER_AGENT="\t=cmd|' /C calc'!A0"),
        resource_type="api.user",
        resource_id="+1+1",
        details={"x": "-2"},
    )
    response, body = _export(compliance_api, format="csv")
    rows, _ = _split(body)
    table = list(csv.DictReader(io.StringIO(rows.decode())))
    by_action = {r["action"]: r for r in table}
    assert by_action["read"]["user_agent"] == '\'=HYPERLINK("http://x")'
    assert by_action["test.csv"]["user_agent"] == "'\t=cmd|' /C calc'!A0"
    assert by_action["test.csv"]["resource_id"] == "'+1+1"
    for row in table:
        for cell in row.values():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell


@pytest.mark.urls("tests.audit.urls")
@pytest.mark.usefixtures("user_resource")
def test_aud_13_exports_hold_none_of_the_seeded_phi(therapist: User, assign) -> None:
    client = make_user(
        role=Role.CLIENT, email="philomena.q@example.test", full_name="Philomena Quackenbush"
    )
    assign(therapist, client)
    api = APIClient()
    from tests.factories import issue_access_token

    api.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_access_token(therapist)}")
    assert api.get("/demo/clients?q=Quackenbush").status_code == 200
    assert api.get(f"/demo/clients/{client.pk}").status_code == 200
    response = api.patch(
        f"/demo/cards/{client.pk}", {"full_name": "Philomena Newsurname 1990-04-01"}, format="json"
    )
    assert response.status_code == 200
    seeded = ("Philomena", "Quackenbush", "Newsurname", "philomena.q", "1990-04-01")
    for fmt in ("csv", "jsonl", "fhir"):
        body = b"".join(export_chunks(export_plan(fmt=fmt, filters=EventFilters())))
        text = body.decode()
        assert str(client.pk) in text  # the client's events are in it, by id
        for value in seeded:
            assert value not in text, (fmt, value)
    assert chain_head().seq > 0
