"""``manage.py video_lost_processes``: detach the participants of web processes that stopped
beating, as of their last beat (``video.liveness``; idempotent; every minute)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from video.liveness import lost_processes_sweep


class Command(BaseCommand):
    help = "Detach the participants of lost web processes (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        count = lost_processes_sweep(now=timezone.now())
        self.stdout.write(f"video_lost_processes: {count} participants detached")
