"""``manage.py send_reminders``: queue the 24 h and 1 h reminders that are due and deliver every
unsent booking email (announcements whose delivery after commit failed or was turned off).

Safe to run every minute from cron or a task worker, twice, or on two machines at once: a
reminder is queued once (a unique row per booking, recipient, kind and start) and each row is
claimed by one sender (a conditional update) before it is sent.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from scheduling.bookings.notifications import reminders_send


class Command(BaseCommand):
    help = "Queue due booking reminders and send unsent booking emails (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        done = reminders_send(now=timezone.now())
        self.stdout.write(
            f"send_reminders: {done['due']} reminders due, {done['sent']} sent, "
            f"{done['dropped']} dropped, {done['failed']} failed"
        )
