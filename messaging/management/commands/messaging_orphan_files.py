"""``manage.py messaging_orphan_files``: delete attachment files that no row names and that are
older than ``MESSAGING_ORPHAN_GRACE_SECONDS`` (messaging/orphans.py). Safe to run twice."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from messaging.orphans import attachment_orphans_delete


class Command(BaseCommand):
    help = "Delete attachment files no message names (older than MESSAGING_ORPHAN_GRACE_SECONDS)."

    def handle(self, *args: Any, **options: Any) -> None:
        deleted = attachment_orphans_delete(now=timezone.now())
        self.stdout.write(f"messaging_orphan_files: {deleted} files deleted")
