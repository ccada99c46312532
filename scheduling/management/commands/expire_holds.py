"""``manage.py expire_holds``: cancel holds whose time ran out (tidy-up, safe to run any time).

Not needed for correctness: an expired hold stops blocking the slot by itself, and the booking
code cancels a therapist's expired holds before it books. This keeps statuses and calendars
tidy for therapists nobody books meanwhile. Idempotent; one therapist per transaction.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from scheduling.bookings.services import holds_expire


class Command(BaseCommand):
    help = "Cancel expired booking holds (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        count = holds_expire(now=timezone.now())
        self.stdout.write(f"expire_holds: {count} holds cancelled")
