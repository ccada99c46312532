"""``manage.py messaging_retention``: erase the messages of conversations quiet for longer than
``MESSAGING_RETENTION_DAYS`` (messaging/retention.py). Resumable and safe to run twice."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from messaging.retention import messages_erase_all_expired


class Command(BaseCommand):
    help = "Erase messages past the records policy (MESSAGING_RETENTION_DAYS)."

    def handle(self, *args: Any, **options: Any) -> None:
        total = messages_erase_all_expired(now=timezone.now())
        self.stdout.write(f"messaging_retention: {total} conversations erased")
