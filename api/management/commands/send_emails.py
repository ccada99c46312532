"""``manage.py send_emails``: send the queued plain emails whose delivery right after their
commit failed (booking emails are ``send_reminders``'s).

Safe to run every minute from cron or a task worker, twice, or on two machines at once: each
email is claimed by one sender (a conditional update) before it is sent, and one that keeps
failing is given up, logged, ``EMAIL_GIVE_UP_HOURS`` after it was queued.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from api.services.mail import emails_send_queued


class Command(BaseCommand):
    help = "Send queued emails that have not gone out yet (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        done = emails_send_queued(now=timezone.now())
        self.stdout.write(
            f"send_emails: {done['sent']} sent, {done['failed']} failed, "
            f"{done['given_up']} given up"
        )
