"""The Celery app: configured from Django's settings (``CELERY_*``), tasks found in each app's
``tasks.py``, the beat schedule in ``settings.CELERY_BEAT_SCHEDULE``.

Run ``celery -A api worker`` (any number) and ``celery -A api beat`` (exactly one); ``make
run`` starts both beside uvicorn on the filesystem broker (no server needed).
"""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "api.settings")

app = Celery("api")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _broker_folders(sender: Celery, **kwargs: object) -> None:
    """The filesystem broker's folders must exist before a worker or beat uses them."""
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)
