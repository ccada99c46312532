"""Attendance from real calls: two aiortc peers (video.client.VideoClient) report their peer
connections' states through the real app under uvicorn, in the loopback-only namespace; what
the server recorded is read back from ``GET /api/v1/video/rooms/{booking_id}/attendance``.

The media path is cut as in tests/video/test_recovery.py (every UDP packet dropped, consent
checks shortened): both peer connections fail and report it, and the gap shows in the attended
time once the path is back and a new round connects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from tests.video.webrtc_support import (
    Call,
    LiveApp,
    Server,
    api_get,
    close_all,
    run_async,
    start_call,
    udp_dropped,
)
from video.client import VideoClient

pytestmark = [pytest.mark.webrtc, pytest.mark.usefixtures("consent_checked_quickly")]

FRAMES = 30


async def attendance_when(
    server: Server, call: Call, condition: Callable[[dict[str, Any]], bool], *, what: str
) -> dict[str, Any]:
    """The attendance as the therapist reads it, polled (bounded) until ``condition`` holds."""
    url = f"{server.base_url}/api/v1/video/rooms/{call.booking}/attendance"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        body: dict[str, Any] = await asyncio.to_thread(api_get, url, call.therapist_token)
        if condition(body):
            return body
        if loop.time() > deadline:
            raise AssertionError(f"no {what} within 20 s: {body}\n{server.log_tail()}")
        await asyncio.sleep(0.2)


def media_of(body: dict[str, Any], role: str) -> list[dict[str, str]]:
    person = next(p for p in body["participants"] if p["role"] == role)
    media: list[dict[str, str]] = person["media"]
    return media


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def frames_flow(*peers: VideoClient) -> None:
    targets = [(p, dict(p.frames_received)) for p in peers]
    await asyncio.gather(
        *(
            p.wait_for_frames(audio=seen["audio"] + FRAMES, video=seen["video"] + FRAMES)
            for p, seen in targets
        )
    )


def test_both_peers_connected_make_attended_time_that_ends_when_one_leaves(
    video_app: LiveApp, video_server: Server
) -> None:
    """The clients' reports make one media interval each; the attended time is their overlap,
    from after the admission to the client's leaving, and stops growing once it has left."""
    call = video_app.claim()

    async def scenario() -> None:
        therapist, client = VideoClient(name="therapist"), VideoClient(name="client")
        try:
            await start_call(
                call,
                therapist=therapist,
                client=client,
                therapist_api=video_server.base_url,
                client_api=video_server.base_url,
            )
            await frames_flow(therapist, client)
            live = await attendance_when(
                video_server,
                call,
                lambda b: b["attended_seconds"] >= 1,
                what="attended time while both are connected",
            )
            assert [len(media_of(live, r)) for r in ("therapist", "client")] == [1, 1]
            admitted = at(live["participants"][1]["in_call"][0]["start"])
            assert at(live["actual_start"]) >= admitted
            await client.leave()
            gone = await attendance_when(
                video_server,
                call,
                lambda b: at(b["actual_end"]) < at(b["as_of"]),
                what="an end to the attended time after the client left",
            )
            client_media = media_of(gone, "client")
            assert len(client_media) == 1
            assert gone["actual_end"] == client_media[0]["end"]
            again = await attendance_when(
                video_server, call, lambda b: at(b["as_of"]) > at(gone["as_of"]), what="a re-read"
            )
            assert again["attended_seconds"] == gone["attended_seconds"]
            assert again["attended"] == gone["attended"]
        finally:
            await close_all(therapist, client)

    run_async(scenario())


def test_a_media_path_cut_shows_as_a_gap_in_the_attended_time(
    video_app: LiveApp, video_server: Server
) -> None:
    """Wi-Fi to cellular: the path dies under live sockets, both peer connections fail and say
    so; once it is back a new round connects and both say so again. The attended time has two
    parts with the outage between them."""
    call = video_app.claim()

    async def scenario() -> None:
        therapist, client = VideoClient(name="therapist"), VideoClient(name="client")
        try:
            await start_call(
                call,
                therapist=therapist,
                client=client,
                therapist_api=video_server.base_url,
                client_api=video_server.base_url,
            )
            await frames_flow(therapist, client)
            await attendance_when(
                video_server, call, lambda b: b["attended_seconds"] >= 1, what="attended time"
            )
            first = therapist.round
            assert first is not None
            with udp_dropped():
                down = await attendance_when(
                    video_server,
                    call,
                    lambda b: all(media_of(b, r)[-1]["end"] != b["as_of"] for r in ROLES),
                    what="both media intervals closed while the path is cut",
                )
            await frames_flow(therapist, client)
            back = await attendance_when(
                video_server,
                call,
                lambda b: len(b["attended"]) == 2 and b["attended_seconds"] >= 1,
                what="a second attended part after the path came back",
            )
            (one, two) = back["attended"]
            assert at(one["end"]) <= at(down["as_of"]) < at(two["start"])
            assert (back["actual_start"], back["actual_end"]) == (one["start"], two["end"])
        finally:
            await close_all(therapist, client)

    run_async(scenario())


ROLES = ("therapist", "client")
