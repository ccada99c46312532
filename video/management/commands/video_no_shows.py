"""``manage.py video_no_shows``: record the therapist no-shows the video rooms' attendance
shows (``video.no_shows``; idempotent, safe on several machines; every minute)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from video.no_shows import therapist_no_shows_record


class Command(BaseCommand):
    help = "Record therapist no-shows from video attendance (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        count = therapist_no_shows_record(now=timezone.now())
        self.stdout.write(f"video_no_shows: {count} therapist no-shows recorded")
