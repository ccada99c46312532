"""Fetch due URL calendars (and re-expand uploads) into busy intervals.

Safe to run every few minutes from cron, on several machines at once: each calendar is
claimed with a conditional update before it is fetched, and a sync replaces the calendar's
busy times as a whole.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from scheduling.models import ExternalCalendar
from scheduling.services import external_calendar_claim, external_calendar_sync


class Command(BaseCommand):
    help = "Sync external busy calendars that are due."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=500, help="calendars per run")

    def handle(self, *args: Any, limit: int, **options: Any) -> None:
        now = timezone.now()
        lease = timedelta(minutes=10)
        due = ExternalCalendar.objects.filter(next_sync_at__lte=now).order_by("next_sync_at")
        outcomes: dict[str, int] = {}
        for calendar_id in due.values_list("id", flat=True)[:limit]:
            if not external_calendar_claim(calendar_id=calendar_id, now=now, lease=lease):
                continue  # another worker has it
            outcome = external_calendar_sync(calendar_id=calendar_id, now=now)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        summary = ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())) or "nothing due"
        self.stdout.write(f"sync_calendars: {summary}")
