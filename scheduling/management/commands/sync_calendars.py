"""Fetch due URL calendars (and re-expand uploads) into busy intervals.

Safe to run every few minutes from cron, on several machines at once: each calendar is
claimed with a conditional update before it is fetched, and a sync replaces the calendar's
busy times as a whole.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from scheduling.services import external_calendars_sync_due


class Command(BaseCommand):
    help = "Sync external busy calendars that are due."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=500, help="calendars per run")

    def handle(self, *args: Any, limit: int, **options: Any) -> None:
        outcomes = external_calendars_sync_due(now=timezone.now(), limit=limit)
        summary = ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())) or "nothing due"
        self.stdout.write(f"sync_calendars: {summary}")
