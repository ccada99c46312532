"""``manage.py run_media_worker`` (a real one serving through Redis: test_calls.py)."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command


def test_it_refuses_to_run_when_the_web_processes_run_the_echo_themselves(settings) -> None:
    settings.VIDEO_PRECALL_MEDIA_WORKER = "inprocess"
    with pytest.raises(CommandError, match="VIDEO_PRECALL_MEDIA_WORKER=channels"):
        call_command("run_media_worker")
