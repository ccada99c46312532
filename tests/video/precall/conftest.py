"""Pre-call fixtures: an app server of its own per test (its peer connections are the echo
peer's; VID-09's tests read the shared server's), one test slot, five-second tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.video.webrtc_support import LiveApp, Server


@pytest.fixture
def precall_server(video_app: LiveApp) -> Iterator[Server]:
    server = video_app.start_server(VIDEO_PRECALL_MAX_TESTS="1", VIDEO_PRECALL_SECONDS="5")
    try:
        yield server
    finally:
        video_app.stop_server(server)
