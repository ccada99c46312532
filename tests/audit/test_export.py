"""AUD-14, AUD-15, AUD-13: exports parse back, check offline, hold no PHI, neutralise formulas.

Each format is its own operation (``/audit/export/{csv,jsonl,fhir}``); the FHIR NDJSON is
AuditEvent lines only and its signed manifest is a Provenance from ``/audit/export/fhir/manifest``.
"""

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


def _export(api: APIClient, fmt: str, **params: str) -> tuple[Any, bytes]:
    response = api.get(f"/api/v1/audit/export/{fmt}", params)
    body = b"".join(response.streaming_content) if response.status_code == 200 else b""
    return response, body


def _provenance_manifest(provenance: dict[str, Any]) -> dict[str, Any]:
    """The signed manifest in a Provenance, read as an auditor would: FHIR-valid, then decoded."""
    model = FhirProvenance.model_validate(provenance)
    manifest = json.loads(model.signature[0].data)  # the model decodes base64Binary
    assert json.loads(base64.b64decode(provenance["signature"][0]["data"])) == manifest
    return manifest


def _fhir_verifies(body: bytes, provenance: dict[str, Any]) -> bool:
    """The offline check of a FHIR export: the signature, then the body against the manifest."""
    manifest = _provenance_manifest(provenance)
    seqs = [int(json.loads(line)["id"]) for line in body.splitlines()]
    return (
        signature_valid(manifest)
        and manifest["format"] == "fhir"
        and manifest["body_sha256"] == hashlib.sha256(body).hexdigest()
        and manifest["count"] == len(seqs)
        and (manifest["first_seq"], manifest["last_seq"])
        == ((seqs[0], seqs[-1]) if seqs else (None, None))
    )


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
    response, body = _export(compliance_api, "jsonl")
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
    response, body = _export(compliance_api, "csv", client=str(trail["client"].pk))
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


def test_aud_14_fhir_export_is_audit_events_only_and_its_manifest_verifies(
    compliance_api: APIClient, trail: dict[str, User]
) -> None:
    therapist = str(trail["therapist"].pk)
    response, body = _export(compliance_api, "fhir", actor=therapist)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/fhir+ndjson"
    lines = body.splitlines()
    assert len(lines) == 3
    resources = [json.loads(line) for line in lines]
    for resource in resources:
        assert resource["resourceType"] == "AuditEvent"
        event = FhirAuditEvent.model_validate(resource)
        assert event.action == "R"
        assert event.outcome == "0"
        assert event.agent[0].who.identifier.value == str(trail["therapist"].pk)
        assert event.agent[0].network.address == "198.51.100.20"
        assert event.recorded == datetime.fromisoformat(resource["recorded"])
    patients = {r["entity"][0]["what"]["identifier"]["value"] for r in resources}
    assert patients == {str(trail["client"].pk), str(trail["outsider"].pk)}

    head_seq, head_hash = response["X-Audit-Chain-Head"].split(":")
    link = response["Link"]
    url = link[link.index("<") + 1 : link.index(">")]
    assert 'rel="describedby"' in link
    assert url.startswith("/api/v1/audit/export/fhir/manifest?")
    manifest_response = compliance_api.get(url)
    assert manifest_response.status_code == 200
    assert manifest_response["Content-Type"] == "application/fhir+json"
    provenance = manifest_response.json()
    assert provenance["resourceType"] == "Provenance"
    assert _fhir_verifies(body, provenance)
    manifest = _provenance_manifest(provenance)
    _check_manifest(manifest, body, "fhir")
    assert manifest["count"] == 3
    assert manifest["head"] == {"seq": int(head_seq), "hash": head_hash}
    assert manifest["filters"] == {"actor_id": therapist}

    tampered = json.loads(lines[1])
    tampered["outcome"] = "4"
    forged = b"\n".join([lines[0], json.dumps(tampered).encode(), lines[2]]) + b"\n"
    assert not _fhir_verifies(forged, provenance)
    assert not _fhir_verifies(b"\n".join([lines[0], lines[2]]) + b"\n", provenance)
    signature = provenance["signature"][0]
    lied = base64.b64encode(json.dumps({**manifest, "count": 2}).encode()).decode()
    assert not _fhir_verifies(body, {**provenance, "signature": [{**signature, "data": lied}]})


def test_aud_14_the_fhir_manifest_is_derived_again_after_more_events(
    compliance_api: APIClient, trail: dict[str, User]
) -> None:
    response, body = _export(compliance_api, "fhir", client=str(trail["client"].pk))
    head_seq = response["X-Audit-Chain-Head"].split(":")[0]
    audit_record(action="read", actor=trail["therapist"], patient_id=trail["client"].pk)
    audit_seal()  # a later event for the same client, beyond the export's head
    params = {"client": str(trail["client"].pk), "upto_seq": head_seq}
    provenance = compliance_api.get("/api/v1/audit/export/fhir/manifest", params).json()
    assert _fhir_verifies(body, provenance)
    assert _provenance_manifest(provenance)["count"] == 2
    _, later = _export(compliance_api, "fhir", client=str(trail["client"].pk))
    assert len(later.splitlines()) == 5  # + the export, the read, the manifest read
    assert not _fhir_verifies(later, provenance)


def test_aud_14_the_manifest_read_is_recorded_like_the_export(
    compliance_officer: User, compliance_api: APIClient, trail: dict[str, User], new_events: Events
) -> None:
    client = str(trail["client"].pk)
    response, _ = _export(compliance_api, "fhir", client=client)
    upto_seq = int(response["X-Audit-Chain-Head"].split(":")[0])
    params = {"client": client, "upto_seq": str(upto_seq)}
    assert compliance_api.get("/api/v1/audit/export/fhir/manifest", params).status_code == 200
    [export] = new_events().filter(action="audit.export")
    [manifest] = new_events().filter(action="audit.export_manifest")
    for event in (export, manifest):
        assert event.actor_id == compliance_officer.pk
        assert event.patient_id == trail["client"].pk
        assert event.resource_type == "audit.event"
        assert event.details["format"] == "fhir"
        assert event.details["filters"] == {"patient_id": client}
        assert event.details["upto_seq"] == upto_seq
    assert manifest.details["params"] == ["client", "upto_seq"]


def test_aud_14_the_fhir_manifest_refuses_an_unknown_head_or_a_missing_one(
    compliance_api: APIClient, trail: dict[str, User], new_events: Events
) -> None:
    url = "/api/v1/audit/export/fhir/manifest"
    head = audit_seal().head
    response = compliance_api.get(url, {"upto_seq": str(head.seq + 1000)})
    assert (response.status_code, response.json()["code"]) == (404, "unknown_chain_head")
    response = compliance_api.get(url)
    assert (response.status_code, response.json()["errors"][0]["field"]) == (400, "upto_seq")
    response = compliance_api.get(url, {"upto_seq": str(head.seq), "format": "csv"})
    assert response.status_code == 400
    assert not new_events().filter(action="audit.export_manifest").exists()


@pytest.mark.parametrize(
    ("fmt", "media"),
    [
        ("csv", "text/csv; charset=utf-8"),
        ("jsonl", "application/x-ndjson"),
        ("fhir", "application/fhir+ndjson"),
    ],
)
def test_the_old_format_parameter_still_answers_the_same_body(
    compliance_api: APIClient, trail: dict[str, User], new_events: Events, fmt: str, media: str
) -> None:
    actor = str(trail["therapist"].pk)  # the exports' own rows (by the officer) stay out
    old = compliance_api.get("/api/v1/audit/export", {"format": fmt, "actor": actor})
    assert (old.status_code, old["Content-Type"]) == (200, media)
    old_body = b"".join(old.streaming_content)
    new, new_body = _export(compliance_api, fmt, actor=actor)
    assert new["Content-Type"] == media
    if fmt == "fhir":
        assert old_body == new_body
        head_seq = old["X-Audit-Chain-Head"].split(":")[0]
        assert old["Link"].startswith(
            f"</api/v1/audit/export/fhir/manifest?actor={actor}&upto_seq={head_seq}>"
        )
    else:  # the same rows; the manifests differ by generated_at only
        assert _split(old_body)[0] == _split(new_body)[0]
    formats = [e.details["format"] for e in new_events().filter(action="audit.export")]
    assert formats == [fmt, fmt]
    response = compliance_api.get(f"/api/v1/audit/export/{fmt}", {"format": fmt})
    assert response.status_code == 400  # the path names the format; the parameter is unknown


def test_each_format_is_its_own_operation_with_a_text_body() -> None:
    from drf_spectacular.generators import SchemaGenerator

    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    expected = {
        "csv": "text/csv",
        "jsonl": "application/x-ndjson",
        "fhir": "application/fhir+ndjson",
    }
    for fmt, media in expected.items():
        operation = paths[f"/api/v1/audit/export/{fmt}"]["get"]
        assert operation["operationId"] == f"audit_export_{fmt}"
        assert operation["responses"]["200"]["content"] == {media: {"schema": {"type": "string"}}}
        assert "Streamed" in operation["responses"]["200"]["description"]
        assert "format" not in {p["name"] for p in operation["parameters"]}
    manifest = paths["/api/v1/audit/export/fhir/manifest"]["get"]
    assert manifest["operationId"] == "audit_export_fhir_manifest"
    assert list(manifest["responses"]["200"]["content"]) == ["application/fhir+json"]
    assert {"upto_seq", "client", "actor"} <= {p["name"] for p in manifest["parameters"]}
    old = paths["/api/v1/audit/export"]["get"]
    assert (old["operationId"], old["deprecated"]) == ("audit_export", True)
    contents = old["responses"]["200"]["content"]
    assert contents == {media: {"schema": {"type": "string"}} for media in expected.values()}


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
        response, body = _export(compliance_api, "jsonl", **params)
        assert response.status_code == 200, name
        rows, last = _split(body)
        manifest = json.loads(last)["manifest"]
        assert manifest["count"] == expected == len(rows.splitlines()), name
        assert manifest["filters"], name


def test_aud_14_the_export_records_itself(
    compliance_officer: User, compliance_api: APIClient, trail: dict[str, User], new_events: Events
) -> None:
    response, _ = _export(compliance_api, "csv", client=str(trail["client"].pk))
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
    response, body = _export(compliance_api, "csv")
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
