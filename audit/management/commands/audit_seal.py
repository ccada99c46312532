"""Seal committed events into the hash chain: once, or as a loop (the sealing job)."""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from audit.chain import audit_seal


class Command(BaseCommand):
    help = "Link committed, unsealed audit events into the hash chain."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loop", action="store_true", help="Keep sealing until stopped.")
        parser.add_argument("--interval", type=float, default=1.0, help="Seconds between runs.")

    def handle(self, *args: Any, loop: bool, interval: float, **options: Any) -> None:
        while True:
            result = audit_seal()
            line = {"sealed": result.sealed, "head_seq": result.head.seq, "head": result.head.hash}
            self.stdout.write(json.dumps(line))
            if not loop:
                return
            time.sleep(interval)
