"""A web process killed under a call (video.liveness), for real: two uvicorn processes sharing
a Redis in the loopback-only namespace, the therapist on one and the client on the other, and
the client's process killed with SIGKILL (no socket is closed, no disconnect runs). The sweep
(``manage.py video_lost_processes``, as the job runs it) detaches the client as of its
process's last beat and tells the therapist through Redis.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.live import manage
from tests.video.test_attendance_calls import at, attendance_when, frames_flow, media_of
from tests.video.webrtc_support import LiveApp, close_all, run_async, run_redis, start_call
from video.client import VideoClient

pytestmark = pytest.mark.webrtc

BEAT = {"VIDEO_PROCESS_BEAT_SECONDS": "1", "VIDEO_PROCESS_DEAD_SECONDS": "2"}


def test_a_killed_web_process_is_detached_as_of_its_last_beat(
    video_app: LiveApp, tmp_path: Path
) -> None:
    """The client's process is killed mid-call: once it has been silent for the limit, the
    sweep detaches the client, its media interval ends at or before the kill (its process's
    last beat: a beat earlier at most, on a loaded box a few), and the therapist, on the live
    process, gets ``peer-left``."""
    call = video_app.claim()
    with run_redis(tmp_path) as redis_url:
        first = video_app.start_server(REDIS_URL=redis_url, **BEAT)
        second = video_app.start_server(REDIS_URL=redis_url, **BEAT)
        sweep_env = {**video_app.env, "REDIS_URL": redis_url, **BEAT}
        try:

            async def scenario() -> None:
                therapist, client = VideoClient(name="therapist"), VideoClient(name="client")
                try:
                    await start_call(
                        call,
                        therapist=therapist,
                        client=client,
                        therapist_api=first.base_url,
                        client_api=second.base_url,
                    )
                    await frames_flow(therapist, client)
                    await attendance_when(
                        first, call, lambda b: b["attended_seconds"] >= 1, what="attended time"
                    )
                    seen = len(therapist.messages)
                    killed_at = datetime.now(UTC)
                    second.process.kill()
                    second.process.wait(timeout=10)
                    for _ in range(15):  # each run starts Django (a second or two): the pace
                        out = await asyncio.to_thread(manage, sweep_env, "video_lost_processes")
                        if out.strip() == "video_lost_processes: 1 participants detached":
                            break
                        assert out.strip() == "video_lost_processes: 0 participants detached"
                    else:
                        pytest.fail("the sweep never detached the client")
                    left = await therapist.wait_for("peer-left", since=seen)
                    assert (left["participant"], left["reason"]) == (
                        client.participant_id,
                        "disconnected",
                    )
                    body = await attendance_when(
                        first,
                        call,
                        lambda b: media_of(b, "client")[-1]["end"] != b["as_of"],
                        what="the client's media interval closed",
                    )
                    end = at(media_of(body, "client")[-1]["end"])
                    assert killed_at - timedelta(seconds=5) < end <= killed_at
                    again = await asyncio.to_thread(manage, sweep_env, "video_lost_processes")
                    assert again.strip() == "video_lost_processes: 0 participants detached"
                finally:
                    await close_all(therapist, client)

            run_async(scenario())
            assert first.peer_connections() == ""
        finally:
            video_app.stop_server(first)
            if second in video_app.servers:
                video_app.stop_server(second)
