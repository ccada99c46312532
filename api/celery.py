"""The Celery app: configured from Django's settings (``CELERY_*``), tasks found in each app's
``tasks.py``, the beat schedule in ``settings.CELERY_BEAT_SCHEDULE``.

Run ``celery -A api worker`` (any number) and ``celery -A api beat`` (exactly one); ``make
run`` starts both beside uvicorn on the filesystem broker (no server needed).
"""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery
from celery.signals import beat_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "api.settings")

app = Celery("api")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _folders(sender: Celery, **kwargs: object) -> None:
    """The filesystem broker's folders, and the one of beat's schedule file (whatever the
    broker), must exist before a worker or beat uses them."""
    options = sender.conf.broker_transport_options or {}
    folders = [options.get(key) for key in ("data_folder_in", "data_folder_out", "control_folder")]
    folders.append(Path(sender.conf.beat_schedule_filename).parent)
    for folder in folders:
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)


@beat_init.connect
def _frequent_jobs_at_start(sender: object = None, **kwargs: object) -> None:
    """Beat first runs a job one interval after it starts; the every-minute jobs (sealing,
    reminders, emails, settling, availability) are sent once as it starts, so a fresh install
    seals its trail and sends what is due at once. Every job is safe to run twice."""
    from django.conf import settings

    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        if entry["schedule"] == settings.JOBS_FREQUENT_SECONDS:
            app.send_task(name, expires=settings.JOBS_FREQUENT_SECONDS)
