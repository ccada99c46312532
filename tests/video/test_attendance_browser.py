"""The reference page reports its peer connection for attendance: headless Chromium as the
client, a Python therapist, in the loopback-only namespace (``make test-webrtc``). What the
server recorded is read back from ``GET /api/v1/video/rooms/{booking_id}/attendance``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from tests.video.browser_support import chromium, join, new_page, open_room, wait_media, wait_state
from tests.video.webrtc_support import Call, LiveApp, Server, api_get, run_async
from video.client import VideoClient

pytestmark = pytest.mark.webrtc


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
            raise AssertionError(f"no {what} within 20 s: {body}")
        await asyncio.sleep(0.2)


def client_media(body: dict[str, Any]) -> list[dict[str, str]]:
    person = next(p for p in body["participants"] if p["role"] == "client")
    media: list[dict[str, str]] = person["media"]
    return media


def test_the_page_reports_connected_and_hanging_up_ends_its_interval(
    video_server: Server, video_app: LiveApp
) -> None:
    call = video_app.claim()

    async def scenario() -> None:
        therapist = VideoClient(name="therapist")
        await therapist.join(video_server.base_url, call.therapist_token, call.booking)
        await therapist.connect()
        try:
            async with chromium() as browser:
                _, page, _ = await new_page(browser)
                await open_room(page, video_server.base_url, call.booking, call.client_token)
                await join(page, jurisdiction="US-NY")
                await wait_state(page, "waiting")
                [participant] = await therapist.waiting_participants(1)
                await therapist.admit(participant)
                await wait_media(page)

                live = await attendance_when(
                    video_server,
                    call,
                    lambda b: b["attended_seconds"] >= 1,
                    what="attended time with the page connected",
                )
                assert len(client_media(live)) == 1
                assert client_media(live)[0]["end"] == live["as_of"]  # still open

                await page.click("#hangup")
                await wait_state(page, "ended")
                gone = await attendance_when(
                    video_server,
                    call,
                    lambda b: client_media(b)[0]["end"] != b["as_of"],
                    what="the page's interval closed after hanging up",
                )
                ended = datetime.fromisoformat(client_media(gone)[0]["end"])
                assert ended < datetime.fromisoformat(gone["as_of"])
                assert gone["actual_end"] == client_media(gone)[0]["end"]
        finally:
            await therapist.close()

    run_async(scenario(), timeout=120)
