"""Recompute the directory's availability summary (next open slot, open-slot runs).

Changes to rules, calendars and bookings refresh a therapist at once; this command covers
time passing (notice and horizon move on). Idempotent: run it every few minutes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from scheduling.services import availability_summaries_refresh


class Command(BaseCommand):
    help = "Refresh the precomputed availability of therapists whose summary is stale."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--max-age-minutes",
            type=int,
            default=15,
            help="refresh summaries older than this (0: all)",
        )

    def handle(self, *args: Any, max_age_minutes: int, **options: Any) -> None:
        max_age = timedelta(minutes=max_age_minutes) if max_age_minutes else None
        count = availability_summaries_refresh(now=timezone.now(), max_age=max_age)
        self.stdout.write(f"refresh_availability: {count} therapists refreshed")
