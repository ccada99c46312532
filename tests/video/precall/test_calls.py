"""The pre-call test end to end (docs/video.md, "Pre-call test"): the Python client
(video.precall.client, aiortc) against the echo peer of a real app under uvicorn, in the
loopback-only namespace (make test-webrtc). Media goes out and comes back capped, the report's
figures are plausible, the cap per worker answers busy with Retry-After, a token opens one test,
one test per user at a time, and the echo peer runs in a separate ``run_media_worker`` process
reached through Redis. Each test has its own app servers: their peer connections are the echo
peer's, never a session room's (VID-09: the only server-side peers are pre-call echo peers;
the session tests read the shared server's log). VID-10: the test's audit events hold no SDP
and no address."""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.live import manage
from tests.video.webrtc_support import LiveApp, Server, run_async, run_redis
from video.precall.client import PrecallClient, PrecallRefused

pytestmark = pytest.mark.webrtc

SECONDS = 5  # the shortest test: enough for ten pings and five stats messages
CAP = (320, 240, 15)


def post_offer(url: str, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    """A raw POST: status, headers and problem (the client hides the headers)."""
    request = urllib.request.Request(  # noqa: S310 - loopback
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            status, headers, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, headers, body = error.code, error.headers, error.read()
    return status, {k.lower(): v for k, v in headers.items()}, json.loads(body or b"{}")


def audit_events(app: LiveApp, test_id: str, count: int) -> list[dict[str, Any]]:
    """The audit events of one test once there are ``count`` (the last is written as the echo
    peer closes, after its report), read by the app's own code in a subprocess; 10 tries."""
    script = (
        "import json; from audit.models import AuditEvent; print(json.dumps(["
        "{'action': e.action, 'outcome': e.outcome, 'details': e.details}"
        f" for e in AuditEvent.objects.filter(resource_id='{test_id}').order_by('id')]))"
    )
    for _ in range(10):
        events = json.loads(manage(app.env, "shell", "-c", script).strip().splitlines()[-1])
        if len(events) >= count:
            break
    return events


def assert_plausible(report: dict[str, Any]) -> None:
    metrics = report["metrics"]
    assert report["reason"] == "completed", report
    # Loopback, but on a machine shared with other work: good, or fair when it was busy.
    assert report["verdict"] in ("good", "fair"), report
    assert metrics["connected"] is True
    assert SECONDS - 1 <= metrics["seconds"] <= SECONDS + 2, metrics
    # Loopback: pings come back in milliseconds, nothing is lost, no jitter to speak of.
    assert metrics["rtt_samples"] >= 2 * (SECONDS - 1), metrics
    assert 0 < metrics["rtt_ms"] < 150, metrics
    assert metrics["upstream"]["loss_pct"] < 2, metrics
    assert metrics["upstream"]["jitter_ms"] < 60, metrics
    assert metrics["upstream"]["kbps"] > 50, metrics
    assert metrics["downstream"]["kbps"] > 50, metrics
    assert metrics["video_received"] and metrics["audio_received"], metrics
    assert metrics["path"] == "direct", metrics


def test_a_python_client_sees_its_capped_video_back_with_a_plausible_report(
    video_app: LiveApp, precall_server: Server
) -> None:
    call = video_app.claim()
    # A camera larger and faster than the cap: what comes back is within it.
    client = PrecallClient(width=640, height=480, fps=30)

    async def scenario() -> dict[str, Any]:
        try:
            started = await client.start(
                precall_server.base_url, call.client_token, seconds=SECONDS
            )
            assert started["limits"] == {
                "width": CAP[0],
                "height": CAP[1],
                "fps": CAP[2],
                "max_seconds": 30,
            }
            assert started["ice_servers"][0]["username"]  # TURN REST credentials
            await client.offer()
            return await client.wait_for_report(timeout=SECONDS + 20)
        finally:
            await client.close()

    report = run_async(scenario())
    assert_plausible(report)
    metrics = report["metrics"]
    assert (metrics["video_width"], metrics["video_height"]) == (640, 480)
    assert 24 <= metrics["video_fps"] <= 32, metrics  # what arrived: the camera's 30
    assert client.received_sizes == {(320, 240)}  # scaled down to the cap
    # About 15 frames a second came back (aiortc's receiver may hold the last one or two).
    back = client.frames_received["video"]
    assert 0.7 * CAP[2] * SECONDS <= back <= CAP[2] * (SECONDS + 3), back
    assert client.frames_received["audio"] > 40 * SECONDS
    assert len(client.stats) >= SECONDS - 1
    assert client.pings_answered >= 2 * (SECONDS - 1)
    # The echo peer answers our pings too.
    assert client.rtts_ms and statistics.median(client.rtts_ms) < 150, client.rtts_ms
    # Audited as a join is: started, answered, finished with the verdict; no SDP, no address.
    test_id = client.started["test"] if client.started else ""
    events = audit_events(video_app, test_id, 3)
    assert [e["action"] for e in events] == [
        "video.precall.started",
        "video.precall.answered",
        "video.precall.finished",
    ]
    finished = events[-1]["details"]
    assert (finished["verdict"], finished["reason"]) == (report["verdict"], "completed")
    text = json.dumps(events)
    assert "127.0.0.1" not in text and "candidate" not in text and "v=0" not in text
    # The server's only peers were echo peers.
    peers = precall_server.peer_connections()
    assert len(re.findall(r"^pid=\d+$", peers, re.MULTILINE)) == 1, peers
    assert "video/precall/echo.py" in peers


def test_at_its_cap_the_worker_answers_busy_with_retry_after_and_the_token_retries(
    video_app: LiveApp, precall_server: Server
) -> None:
    call = video_app.claim()
    first, second = PrecallClient(name="first"), PrecallClient(name="second")

    async def scenario() -> None:
        try:
            await first.start(precall_server.base_url, call.client_token, seconds=SECONDS)
            await first.offer()  # the worker's only slot (VIDEO_PRECALL_MAX_TESTS=1)
            assert second.started is None
            started = await second.start(
                precall_server.base_url, call.therapist_token, seconds=SECONDS
            )
            offer = await second.create_offer()
            status, headers, problem = await asyncio.to_thread(
                post_offer, started["offer_url"], {"token": started["token"], "sdp": offer}
            )
            assert status == 503, problem
            assert problem["code"] == "media_worker_busy"
            assert headers["content-type"] == "application/problem+json"
            retry_after = int(headers["retry-after"])
            # The first test ends at the latest connect + its seconds + 2 s from its answer.
            assert 1 <= retry_after <= 10 + SECONDS + 2, retry_after
            assert problem["retry_after"] == retry_after
            assert f"{retry_after} seconds" in problem["detail"]
            await first.wait_for_report(timeout=SECONDS + 20)
            # The slot frees as the first test's connection closes, just after its report:
            # then the same token works (25 tries, 0.2 s apart).
            await second.close()
            sdp = await second.create_offer()
            for _ in range(25):
                status, _, problem = await asyncio.to_thread(
                    post_offer, started["offer_url"], {"token": started["token"], "sdp": sdp}
                )
                if status != 503:
                    break
                await asyncio.sleep(0.2)
            assert status == 200, problem
            assert problem["type"] == "answer"
        finally:
            await asyncio.gather(first.close(), second.close())

    run_async(scenario())


def test_a_token_opens_one_test_and_a_user_runs_one_test_at_a_time(video_app: LiveApp) -> None:
    call = video_app.claim()
    server = video_app.start_server()
    client = PrecallClient()

    async def scenario() -> None:
        try:
            await client.start(server.base_url, call.client_token, seconds=SECONDS)
            await client.offer()
            with pytest.raises(PrecallRefused) as replayed:
                await client.send_offer(await client.create_offer())
            assert (replayed.value.status, replayed.value.problem["code"]) == (
                409,
                "precall_token_used",
            )
            again = PrecallClient(name="again")
            try:
                started = await again.start(server.base_url, call.client_token, seconds=SECONDS)
                status, headers, problem = await asyncio.to_thread(
                    post_offer,
                    started["offer_url"],
                    {"token": started["token"], "sdp": await again.create_offer()},
                )
            finally:
                await again.close()
            assert (status, problem["code"]) == (429, "precall_in_progress"), problem
            assert int(headers["retry-after"]) > 0
        finally:
            await client.close()

    try:
        run_async(scenario())
    finally:
        video_app.stop_server(server)


def test_a_separate_media_worker_reached_through_redis_runs_the_echo(
    video_app: LiveApp, tmp_path: Path
) -> None:
    call = video_app.claim()
    with run_redis(tmp_path) as redis_url:
        channels = {
            "REDIS_URL": redis_url,
            "VIDEO_PRECALL_MEDIA_WORKER": "channels",
            "VIDEO_PRECALL_QUEUE_SECONDS": "1",
            "VIDEO_PRECALL_MAX_TESTS": "1",
        }
        web = video_app.start_server(**channels)
        worker = video_app.start_media_worker(**channels)
        client, other = PrecallClient(name="client"), PrecallClient(name="other")
        try:

            async def scenario() -> dict[str, Any]:
                try:
                    await client.start(web.base_url, call.client_token, seconds=SECONDS)
                    await client.offer()
                    # The one worker's one slot is taken: no worker takes the next offer.
                    started = await other.start(web.base_url, call.therapist_token)
                    status, headers, problem = await asyncio.to_thread(
                        post_offer,
                        started["offer_url"],
                        {"token": started["token"], "sdp": await other.create_offer()},
                    )
                    assert (status, problem["code"]) == (503, "media_worker_busy"), problem
                    # The worker's hint: when its running test must have ended.
                    assert 1 <= int(headers["retry-after"]) <= 10 + SECONDS + 2, headers
                    return await client.wait_for_report(timeout=SECONDS + 20)
                finally:
                    await asyncio.gather(client.close(), other.close())

            report = run_async(scenario())
            assert_plausible(report)
            assert client.received_sizes == {(320, 240)}
            # The echo peer ran in the worker; the web process made no peer connection.
            assert web.peer_connections() == ""
            assert "video/precall/echo.py" in worker.peer_connections()
        finally:
            video_app.stop_server(web)
            video_app.stop_server(worker)
