"""AUD-18: retention (six years by default); archiving refuses young rows and records itself."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from audit.chain import audit_seal
from audit.db import archive_removal_statements, db_now
from audit.models import AuditCheckpoint, AuditEvent, AuditSeal, Outcome
from audit.retention import RetentionRefused, audit_archive
from audit.services import audit_record
from audit.signing import verify as signature_valid
from audit.verify import chain_verify

pytestmark = pytest.mark.django_db
Events = Callable[[], QuerySet[AuditEvent]]


def test_aud_18_retention_defaults_to_six_years() -> None:
    assert django_settings.AUDIT_RETENTION_DAYS >= 6 * 365


def test_aud_18_a_cut_younger_than_retention_is_refused_and_the_refusal_recorded(
    new_events: Events,
) -> None:
    audit_record(action="test.young")
    audit_seal()
    now = timezone.now()
    out = io.BytesIO()
    with pytest.raises(RetentionRefused):
        audit_archive(before=now - timedelta(days=365 * 5), now=now, out=out)
    assert out.getvalue() == b""
    assert not AuditCheckpoint.objects.filter(kind=AuditCheckpoint.Kind.ARCHIVE).exists()
    [refusal] = new_events().filter(action="audit.archive")
    assert (refusal.outcome, refusal.actor_label) == (Outcome.DENIED, "system")
    assert refusal.details["reason"] == "within_retention"
    assert new_events().filter(action="test.young").exists()


def test_aud_18_the_command_refuses_too_and_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "archive.jsonl"
    before = (timezone.now() - timedelta(days=10)).isoformat()
    with pytest.raises(CommandError, match="kept"):
        call_command("audit_archive", "--out", str(target), "--before", before)
    assert not target.exists()


def test_aud_18_archived_history_removed_by_the_owner_still_verifies(
    settings: object, new_events: Events
) -> None:
    settings.AUDIT_RETENTION_DAYS = 0  # type: ignore[attr-defined]
    for n in range(3):
        audit_record(action="test.old", details={"n": n})
    audit_seal()
    cut_time = db_now(connection) + timedelta(milliseconds=1)
    out = io.BytesIO()
    result = audit_archive(before=cut_time, now=cut_time, out=out)
    assert result.count >= 3
    lines = out.getvalue().splitlines()
    manifest = json.loads(lines[-1])["manifest"]
    assert signature_valid(manifest)
    assert (manifest["count"], manifest["last_seq"]) == (result.count, result.cut_seq)
    assert result.checkpoint is not None
    assert (result.checkpoint.kind, result.checkpoint.seq) == ("archive", result.cut_seq)
    [run] = new_events().filter(action="audit.archive")
    assert (run.outcome, run.details["cut_seq"], run.details["count"]) == (
        Outcome.ALLOWED,
        result.cut_seq,
        result.count,
    )

    # The operator removes the archived rows as the tables' owner (docs/audit.md).
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for statement in archive_removal_statements(
            vendor=connection.vendor, cut_seq=result.cut_seq
        ):
            cursor.execute(statement)
    assert not AuditSeal.objects.filter(seq__lte=result.cut_seq).exists()
    audit_record(action="test.after_the_cut")
    audit_seal()
    report = chain_verify()
    assert report.ok, report.summary()
    assert report.first_seq > result.cut_seq

    # Without the signed checkpoint at the cut, the missing history shows.
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_checkpoint DISABLE TRIGGER USER")
        else:
            cursor.execute("DROP TRIGGER audit_checkpoint_no_delete")
        cursor.execute("DELETE FROM audit_checkpoint")
    report = chain_verify()
    assert report.broken.kind == "deleted"


def test_aud_18_nothing_to_archive_is_a_no_op(settings: object, new_events: Events) -> None:
    settings.AUDIT_RETENTION_DAYS = 0  # type: ignore[attr-defined]
    long_ago = timezone.now() - timedelta(days=3650)
    result = audit_archive(before=long_ago, now=timezone.now(), out=io.BytesIO())
    assert (result.count, result.checkpoint) == (0, None)
    [run] = new_events().filter(action="audit.archive")
    assert run.details["count"] == 0
