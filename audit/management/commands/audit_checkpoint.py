"""Seal, then sign the chain head and store it; print the signed head to keep off the box."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from audit.chain import audit_checkpoint_create


class Command(BaseCommand):
    help = "Create a signed checkpoint of the audit chain head and print it (JSON)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", type=Path, help="Also write the signed head to this file.")

    def handle(self, *args: Any, out: Path | None, **options: Any) -> None:
        document = audit_checkpoint_create().document
        text = json.dumps(document, sort_keys=True)
        if out is not None:
            out.write_text(text + "\n", encoding="utf-8")
        self.stdout.write(text)
