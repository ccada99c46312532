"""Video's jobs (api/jobs.py): the therapist no-shows the rooms' attendance shows, every minute."""

from __future__ import annotations

from django.utils import timezone

from api.jobs import periodic_job
from video.no_shows import therapist_no_shows_record
from video.wake import wake_send

__all__ = ["video_no_shows", "wake_send"]  # the worker finds wake_send's task here


@periodic_job("video_no_shows")
def video_no_shows() -> int:
    """Record therapist no-shows from attendance (as ``manage.py video_no_shows``)."""
    return therapist_no_shows_record(now=timezone.now())
