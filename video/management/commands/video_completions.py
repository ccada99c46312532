"""``manage.py video_completions``: complete the video sessions whose room is over and whose
attendance shows they were held (``video.completions``; idempotent; every minute)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from video.completions import attended_sessions_complete


class Command(BaseCommand):
    help = "Complete attended video sessions whose room is over (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        count = attended_sessions_complete(now=timezone.now())
        self.stdout.write(f"video_completions: {count} sessions completed")
