"""Verify the whole audit chain; exit 1 naming the first broken seq and why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.verify import chain_verify


class Command(BaseCommand):
    help = (
        "Check every link of the audit chain (altered, deleted, inserted, reordered) and that it "
        "still matches signed heads (stored checkpoints and --head files: truncated, rewritten)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--head",
            type=Path,
            action="append",
            default=[],
            help="A signed head saved by audit_checkpoint (repeatable).",
        )

    def handle(self, *args: Any, head: list[Path], **options: Any) -> None:
        heads = [json.loads(path.read_text(encoding="utf-8")) for path in head]
        report = chain_verify(heads=heads)
        if not report.ok:
            raise CommandError(report.summary())
        self.stdout.write(report.summary())
