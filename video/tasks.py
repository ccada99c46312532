"""Video's jobs (api/jobs.py), every minute: the therapist no-shows and the completed sessions
the rooms' attendance shows, and the participants of lost web processes."""

from __future__ import annotations

from django.utils import timezone

from api.jobs import periodic_job
from video.completions import attended_sessions_complete
from video.liveness import lost_processes_sweep
from video.no_shows import therapist_no_shows_record


@periodic_job("video_no_shows")
def video_no_shows() -> int:
    """Record therapist no-shows from attendance (as ``manage.py video_no_shows``)."""
    return therapist_no_shows_record(now=timezone.now())


@periodic_job("video_completions")
def video_completions() -> int:
    """Complete attended sessions whose room is over (as ``manage.py video_completions``)."""
    return attended_sessions_complete(now=timezone.now())


@periodic_job("video_lost_processes")
def video_lost_processes() -> int:
    """Detach the participants of web processes that stopped beating (as ``manage.py
    video_lost_processes``)."""
    return lost_processes_sweep(now=timezone.now())
