"""``manage.py send_message_notifications``: tell participants, without content, that messages
wait for them (messaging/notifications.py). Safe every minute, twice, or on two machines."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from messaging.notifications import message_notifications_send


class Command(BaseCommand):
    help = "Email participants that new messages wait (no content; idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        sent = message_notifications_send(now=timezone.now())
        self.stdout.write(f"send_message_notifications: {sent} notified")
