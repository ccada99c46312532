"""Retention (AUD-18): archive events older than ``AUDIT_RETENTION_DAYS`` (default six years).

Nothing in the application deletes events: the database refuses it. ``audit_archive`` prepares
an operator's removal of old history without breaking verification:

1. it refuses any cut younger than the retention period;
2. it seals, then writes every event up to the cut (the last ``seq`` all of whose events are
   older than ``before``) to an archive file: JSON lines with a signed manifest;
3. it stores a signed ``archive`` checkpoint at the cut, which ``audit_verify`` then uses as
   the anchor of the first remaining link;
4. it records its own run (``audit.archive``, refused runs included).

The operator then removes rows up to the cut as the table owner (SQL in ``docs/audit.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO

from django.conf import settings
from django.db import connection, transaction

from audit.canonical import utc_timestamp
from audit.chain import ChainHead, audit_checkpoint_create, audit_seal
from audit.db import db_now
from audit.export import ExportPlan, export_chunks
from audit.models import AuditCheckpoint, AuditSeal, Outcome
from audit.selectors import EventFilters
from audit.services import SYSTEM, audit_record

ARCHIVED = "audit.archive"


class RetentionRefused(Exception):
    """The cut is younger than the retention period: nothing was archived."""


@dataclass(frozen=True)
class ArchiveResult:
    cut_seq: int
    count: int
    checkpoint: AuditCheckpoint | None


def retention_limit(*, now: datetime) -> datetime:
    return now - timedelta(days=settings.AUDIT_RETENTION_DAYS)


def audit_archive(*, before: datetime, now: datetime, out: BinaryIO) -> ArchiveResult:
    """Archive the sealed events older than ``before`` to ``out`` (see the module docstring)."""
    details = {"before": utc_timestamp(before), "retention_days": settings.AUDIT_RETENTION_DAYS}
    if before > retention_limit(now=now):
        audit_record(
            action=ARCHIVED,
            actor_label=SYSTEM,
            outcome=Outcome.DENIED,
            details={**details, "reason": "within_retention"},
        )
        raise RetentionRefused(
            f"Events younger than {settings.AUDIT_RETENTION_DAYS} days are kept: "
            f"choose a cut on or before {utc_timestamp(retention_limit(now=now))}."
        )
    with transaction.atomic():
        head = audit_seal().head
        first_kept = (
            AuditSeal.objects.filter(event__occurred_at__gte=before)
            .order_by("seq")
            .values_list("seq", flat=True)
            .first()
        )
        cut = head.seq if first_kept is None else first_kept - 1
        first = AuditSeal.objects.order_by("seq").values_list("seq", flat=True).first()
        if first is None or cut < first:
            audit_record(action=ARCHIVED, actor_label=SYSTEM, details={**details, "count": 0})
            return ArchiveResult(cut_seq=cut, count=0, checkpoint=None)
        cut_hash = AuditSeal.objects.values_list("hash", flat=True).get(seq=cut)
        plan = ExportPlan(
            fmt="jsonl",
            filters=EventFilters(),
            head=ChainHead(seq=cut, hash=cut_hash),
            generated_at=utc_timestamp(db_now(connection)),
        )
        for chunk in export_chunks(plan):
            out.write(chunk)
        checkpoint = audit_checkpoint_create(kind=AuditCheckpoint.Kind.ARCHIVE, seq=cut)
        count = cut - first + 1
        audit_record(
            action=ARCHIVED,
            actor_label=SYSTEM,
            details={**details, "first_seq": first, "cut_seq": cut, "count": count},
        )
        return ArchiveResult(cut_seq=cut, count=count, checkpoint=checkpoint)
