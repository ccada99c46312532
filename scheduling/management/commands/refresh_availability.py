"""Recompute the directory's availability summary (next open slot, open-slot runs).

Changes to rules, calendars and bookings refresh a therapist at once; this command covers
time passing (notice and horizon move on). Idempotent: run it every few minutes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Q
from django.utils import timezone

from scheduling.models import TherapistProfile
from scheduling.services import availability_summary_refresh


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
        now = timezone.now()
        stale = Q(availability_computed_at__isnull=True) | Q(
            availability_computed_at__lt=now - timedelta(minutes=max_age_minutes)
        )
        rows = (
            TherapistProfile.objects.all()
            if max_age_minutes == 0
            else TherapistProfile.objects.filter(stale)
        )
        count = 0
        for therapist in rows.order_by("pk").iterator(chunk_size=200):
            availability_summary_refresh(therapist=therapist, now=now)
            count += 1
        self.stdout.write(f"refresh_availability: {count} therapists refreshed")
