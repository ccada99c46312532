"""Call quality (video/quality.py): the stats a client reports, their summary, and who sees it.

The summary is pure (no database); the ``stats`` message goes through the real consumer
(in-memory layer, as tests/video/test_signalling.py); the read is the REST endpoint, for the
booking's therapist and admins only, audited, never with an address.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from audit.models import AuditEvent
from tests.factories import api_client_for, make_user
from tests.video import webrtc_support
from tests.video.signalling_support import (
    FrozenClock,
    Setup,
    hello,
    in_call,
    make_room,
    nothing,
    opened,
    receive,
    run_async,
    send,
)
from tests.video.webrtc_support import LiveApp, Server, api_get, close_all, start_call
from video.client import VideoClient
from video.consumers import VideoSignalConsumer
from video.models import QualitySample
from video.quality import Sample, quality_summary

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
GOOD = {
    "rtt_ms": 42.5,
    "loss": 0.01,
    "jitter_ms": 3.0,
    "bitrate_in_kbps": 800.0,
    "bitrate_out_kbps": 750.0,
    "width": 640,
    "height": 480,
    "relay": False,
}


def sample(seconds: float, rtt: float | None = 50.0, *, relay: bool = False) -> Sample:
    return Sample(T0 + timedelta(seconds=seconds), rtt, 0.02, 4.0, 500.0, relay)


# --- the summary ------------------------------------------------------------------------------


def test_percentiles_are_nearest_rank_over_measured_values() -> None:
    samples = [sample(10 * i, rtt=float(i + 1)) for i in range(20)] + [sample(200, rtt=None)]
    summary = quality_summary(samples, interval_s=10)
    assert (summary.samples, summary.rtt_p50_ms, summary.rtt_p95_ms) == (21, 10.0, 19.0)
    assert summary.loss_mean == pytest.approx(0.02)
    assert (summary.first_at, summary.last_at) == (T0, T0 + timedelta(seconds=200))


def test_time_on_relay_counts_each_report_for_the_time_since_the_last_capped() -> None:
    """Reports every 10 s; the second and third went through TURN; a 60 s silence counts as
    20 s (twice the interval) and reports in any order are sorted first."""
    samples = [sample(0), sample(10, relay=True), sample(20, relay=True), sample(80)]
    summary = quality_summary(list(reversed(samples)), interval_s=10)
    assert summary.reported_seconds == 10 + 10 + 10 + 20
    assert summary.relay_seconds == 20


def test_no_reports_is_an_empty_summary() -> None:
    summary = quality_summary([], interval_s=10)
    assert (summary.samples, summary.rtt_p50_ms, summary.loss_mean) == (0, None, None)
    assert (summary.reported_seconds, summary.relay_seconds) == (0, 0)


# --- the stats message ------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _in_memory_layer(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def setup(db: None, fixed_clock: datetime) -> Setup:
    return make_room()


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    clock = FrozenClock()
    monkeypatch.setattr(VideoSignalConsumer, "clock", staticmethod(clock))
    return clock


@sync_to_async
def samples_of(setup: Setup) -> list[QualitySample]:
    return list(QualitySample.objects.filter(participant__room=setup.room).order_by("at", "pk"))


async def stored(setup: Setup, count: int) -> None:
    """Wait (bounded) until the room has ``count`` samples."""
    async with asyncio.timeout(10):
        while len(await samples_of(setup)) < count:
            await asyncio.sleep(0.01)


@pytest.mark.django_db(transaction=True)
@run_async
async def test_a_report_from_the_call_is_stored_with_the_servers_time(
    setup: Setup, frozen: FrozenClock, fixed_clock: datetime
) -> None:
    therapist, client, _ = await in_call(setup)
    await send(client, "stats", **GOOD)
    await send(therapist, "stats", **{**GOOD, "relay": True, "width": None, "height": None})
    await stored(setup, 2)
    await nothing(therapist, client)
    rows = await samples_of(setup)
    assert sorted((str(r.participant_id), r.relay) for r in rows) == sorted(
        [(setup.client.pid, False), (setup.therapist.pid, True)]
    )
    by_client = next(r for r in rows if str(r.participant_id) == setup.client.pid)
    assert (by_client.rtt_ms, by_client.loss, by_client.width) == (42.5, 0.01, 640)
    assert abs((by_client.at - fixed_clock).total_seconds()) < 60  # the server's clock
    await therapist.disconnect()
    await client.disconnect()


@pytest.mark.django_db(transaction=True)
@run_async
async def test_reports_come_at_most_every_few_seconds(
    setup: Setup, frozen: FrozenClock, settings: Any
) -> None:
    settings.VIDEO_STATS_MIN_SECONDS = 5
    therapist, client, _ = await in_call(setup)
    await send(client, "stats", **GOOD)
    await stored(setup, 1)  # handled at this instant
    frozen.now += 4
    await send(client, "stats", **GOOD)
    refused = await receive(client, "error")
    assert (refused["code"], refused["ref"]) == ("rate_limited", "stats")
    frozen.now += 1
    await send(client, "stats", **GOOD)
    await stored(setup, 2)
    await nothing(client, therapist)
    await therapist.disconnect()
    await client.disconnect()


@pytest.mark.django_db(transaction=True)
@run_async
async def test_vid_04_a_waiting_client_reports_nothing(setup: Setup) -> None:
    client = await opened(setup.room.pk)
    await hello(client, await setup.client.atoken())
    await receive(client, "waiting")
    await send(client, "stats", **GOOD)
    assert (await receive(client, "error"))["code"] == "not_admitted"
    assert await samples_of(setup) == []
    await client.disconnect()


@pytest.mark.parametrize(
    "change",
    [
        {"loss": 1.5},
        {"rtt_ms": -1},
        {"rtt_ms": "40"},
        {"rtt_ms": True},
        {"jitter_ms": 1e9},
        {"width": 2.5},
        {"relay": "yes"},
        {"ip": "192.0.2.1"},
        {"candidate": "candidate:1 1 udp 1 192.0.2.1 5000 typ host"},
    ],
)
@pytest.mark.django_db(transaction=True)
@run_async
async def test_vid_07_a_malformed_report_is_refused_and_stores_nothing(
    setup: Setup, frozen: FrozenClock, change: dict[str, Any]
) -> None:
    """Numbers in their bounds and one boolean, nothing else: no address can be smuggled in."""
    therapist, client, _ = await in_call(setup)
    await send(client, "stats", **{**GOOD, **change})
    refused = await receive(client, "error")
    assert (refused["code"], refused["ref"]) == ("bad_message", "stats")
    assert await samples_of(setup) == []
    await therapist.disconnect()
    await client.disconnect()


@pytest.mark.django_db(transaction=True)
@run_async
async def test_not_a_number_is_refused(setup: Setup, frozen: FrozenClock) -> None:
    therapist, client, _ = await in_call(setup)
    await client.send_to(text_data='{"v":1,"type":"stats","rtt_ms":NaN' + "}")
    assert (await receive(client, "error"))["code"] == "bad_message"
    assert await samples_of(setup) == []
    await therapist.disconnect()
    await client.disconnect()


# --- the read ---------------------------------------------------------------------------------


def _url(setup: Setup) -> str:
    return f"/api/v1/video/rooms/{setup.room.booking_id}/quality"


@pytest.fixture
def reported(setup: Setup, fixed_clock: datetime) -> Setup:
    for i, rtt in enumerate([30.0, 40.0, 50.0]):
        QualitySample.objects.create(
            participant=setup.client.participant,
            at=fixed_clock + timedelta(seconds=10 * i),
            rtt_ms=rtt,
            loss=0.0,
            jitter_ms=2.0,
            bitrate_in_kbps=600.0,
            bitrate_out_kbps=600.0,
            width=640,
            height=480,
            relay=i == 2,
        )
    return setup


@pytest.mark.django_db
def test_the_therapist_reads_the_sessions_quality_audited(reported: Setup) -> None:
    response = api_client_for(reported.therapist.user).get(_url(reported))
    assert response.status_code == 200, response.content
    body = response.json()
    people = {p["participant"]: p for p in body["participants"]}
    client = people[reported.client.pid]["summary"]
    assert (client["samples"], client["rtt_p50_ms"], client["rtt_p95_ms"]) == (3, 40.0, 50.0)
    assert (client["reported_seconds"], client["relay_seconds"]) == (30.0, 10.0)
    assert people[reported.therapist.pid]["summary"]["samples"] == 0
    assert body["session"]["samples"] == 3
    event = AuditEvent.objects.get(action="video.quality.read")
    assert (event.actor_id, event.patient_id) == (
        reported.therapist.user.pk,
        reported.client.user.pk,
    )


@pytest.mark.django_db
def test_an_admin_reads_it_too(reported: Setup, admin_user: Any) -> None:
    assert api_client_for(admin_user).get(_url(reported)).status_code == 200


@pytest.mark.django_db
def test_vid_01_the_client_other_staff_and_other_therapists_do_not(
    reported: Setup, compliance_officer: Any
) -> None:
    """The client and a compliance officer are refused by role (403); another therapist gets
    the answer of a booking that does not exist (404). Each refusal is audited."""
    other = make_user(role="therapist")
    statuses = [
        api_client_for(user).get(_url(reported)).status_code
        for user in (reported.client.user, compliance_officer, other)
    ]
    assert statuses == [403, 403, 404]
    assert AuditEvent.objects.filter(outcome="denied").count() == 3
    assert not AuditEvent.objects.filter(action="video.quality.read", outcome="allowed").exists()


# --- with real peers --------------------------------------------------------------------------


@pytest.mark.webrtc
def test_real_peers_report_what_they_measure_and_the_therapist_reads_it(
    video_app: LiveApp, video_server: Server
) -> None:
    """Two aiortc peers in a call measure their connection (RTT from RTCP, loss, jitter,
    bitrate, frame size; direct on loopback) and report it; the session's therapist reads the
    summary over REST."""
    call = video_app.claim()

    async def scenario() -> dict[str, Any]:
        therapist, client = VideoClient(name="therapist"), VideoClient(name="client")
        try:
            await start_call(
                call,
                therapist=therapist,
                client=client,
                therapist_api=video_server.base_url,
                client_api=video_server.base_url,
            )
            await client.wait_for_frames(audio=30, video=30)
            await client.stats()  # the bitrates are measured from here
            await client.wait_until(lambda: client.frames_received["video"] >= 60, what="frames")

            async def measured() -> dict[str, Any]:
                while (fields := await client.stats())["rtt_ms"] is None:  # RTCP reports
                    await asyncio.sleep(0.1)
                return fields

            fields = await asyncio.wait_for(measured(), 20)
            await client.send("stats", **fields)
            return fields
        finally:
            await close_all(therapist, client)

    sent = webrtc_support.run_async(scenario())
    assert sent["relay"] is False
    assert 0 <= sent["rtt_ms"] < 1000 and 0 <= sent["loss"] <= 0.05
    assert sent["bitrate_in_kbps"] > 0 and (sent["width"], sent["height"]) == (160, 120)
    url = f"{video_server.base_url}/api/v1/video/rooms/{call.booking}/quality"
    summary = None
    for _ in range(50):  # the report is stored after the socket read it: poll, bounded
        body = api_get(url, call.therapist_token)
        people = {p["role"]: p["summary"] for p in body["participants"]}
        if people.get("client", {}).get("samples"):
            summary = people["client"]
            break
        time.sleep(0.1)
    assert summary is not None, body
    assert summary["rtt_p50_ms"] == pytest.approx(sent["rtt_ms"])
    assert summary["relay_seconds"] == 0
