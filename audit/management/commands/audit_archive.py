"""The retention job: archive events older than the cut (never younger than the retention)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from audit.retention import RetentionRefused, audit_archive, retention_limit


class Command(BaseCommand):
    help = (
        "Write sealed events older than --before (default: the retention limit) to an archive "
        "file with a signed manifest and store a signed archive checkpoint at the cut. Deletes "
        "nothing: the operator removes archived rows as the table owner (docs/audit.md)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", type=Path, required=True, help="The archive file (JSONL).")
        parser.add_argument("--before", help="ISO 8601 time with offset (default: the limit).")

    def handle(self, *args: Any, out: Path, before: str | None, **options: Any) -> None:
        now = timezone.now()
        cut: datetime | None = parse_datetime(before) if before else retention_limit(now=now)
        if cut is None or cut.tzinfo is None:
            raise CommandError("--before must be an ISO 8601 time with a UTC offset.")
        try:
            with out.open("wb") as stream:
                result = audit_archive(before=cut, now=now, out=stream)
        except RetentionRefused as refused:
            out.unlink(missing_ok=True)
            raise CommandError(str(refused)) from refused
        if result.count == 0:
            out.unlink(missing_ok=True)
            self.stdout.write("Nothing to archive.")
            return
        self.stdout.write(
            f"Archived {result.count} events up to seq {result.cut_seq} to {out}; signed "
            f"checkpoint at the cut stored. Remove them as the table owner: docs/audit.md."
        )
