"""The operator's commands: seal, checkpoint, verify (AUD-10), export (AUD-14), role SQL."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db.models import QuerySet
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent
from fhir.resources.R4B.provenance import Provenance as FhirProvenance

from audit.models import AuditEvent
from audit.services import audit_record
from audit.signing import verify as signature_valid
from tests.audit.conftest import Attacker

pytestmark = pytest.mark.django_db
Events = Callable[[], QuerySet[AuditEvent]]


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_seal_checkpoint_and_verify_from_the_shell(tmp_path: Path) -> None:
    audit_record(action="test.command")
    sealed = json.loads(_run("audit_seal"))
    assert sealed["sealed"] >= 1
    head_file = tmp_path / "head.json"
    document = json.loads(_run("audit_checkpoint", "--out", str(head_file)))
    assert signature_valid(document)
    assert json.loads(head_file.read_text()) == document
    assert _run("audit_verify", "--head", str(head_file)).startswith("OK: ")


def test_aud_10_verify_exits_non_zero_naming_the_first_broken_seq(attacker: Attacker) -> None:
    event = audit_record(action="test.command")
    json.loads(_run("audit_seal"))
    event.refresh_from_db()
    attacker.disarm()
    attacker.sql("UPDATE audit_event SET outcome = 'denied' WHERE id = %s", [event.pk])
    with pytest.raises(CommandError, match=rf"BROKEN at seq {event.seal.seq}: altered"):
        _run("audit_verify")


def test_aud_14_export_command_writes_a_signed_export_and_records_itself(
    tmp_path: Path, new_events: Events
) -> None:
    audit_record(action="test.command", actor_label="system")
    target = tmp_path / "export.jsonl"
    _run("audit_export", "--format", "jsonl", "--action", "test.command", "--out", str(target))
    *rows, last = target.read_bytes().splitlines()
    manifest = json.loads(last)["manifest"]
    assert signature_valid(manifest)
    assert manifest["count"] == len(rows) == 1
    [event] = new_events().filter(action="audit.export")
    assert (event.actor_label, event.details["via"], event.details["format"]) == (
        "system",
        "manage.py",
        "jsonl",
    )


def test_export_command_writes_fhir_events_and_their_signed_manifest_apart(
    tmp_path: Path, new_events: Events
) -> None:
    audit_record(action="test.command", actor_label="system")
    audit_record(action="test.command", actor_label="system")
    target, manifest_path = tmp_path / "export.ndjson", tmp_path / "manifest.json"
    args = ("--format", "fhir", "--action", "test.command", "--out", str(target))
    _run("audit_export", *args, "--manifest", str(manifest_path))
    body = target.read_bytes()
    lines = body.splitlines()
    events = [FhirAuditEvent.model_validate_json(line) for line in lines]
    assert [e.get_resource_type() for e in events] == ["AuditEvent", "AuditEvent"]
    provenance = FhirProvenance.model_validate_json(manifest_path.read_bytes())
    manifest = json.loads(provenance.signature[0].data)
    assert signature_valid(manifest)
    assert manifest["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert (manifest["format"], manifest["count"]) == ("fhir", 2)
    seqs = [int(json.loads(line)["id"]) for line in lines]
    assert [manifest["first_seq"], manifest["last_seq"]] == seqs
    [event] = new_events().filter(action="audit.export")
    assert (event.details["via"], event.details["format"]) == ("manage.py", "fhir")
    with pytest.raises(CommandError, match="--manifest"):
        _run("audit_export", *args)
    with pytest.raises(CommandError, match="--manifest"):
        _run("audit_export", "--format", "jsonl", "--manifest", str(manifest_path))


def test_role_sql_is_printed_for_operators_and_refuses_odd_names() -> None:
    text = _run("audit_role_sql", "--role", "telehealth_app")
    assert "REVOKE UPDATE, DELETE, TRUNCATE" in text
    assert "audit_event" in text
    with pytest.raises(CommandError):
        _run("audit_role_sql", "--role", "x; DROP TABLE audit_event")
