"""Lost web processes (video.liveness): each process beats while it serves sockets, and the
sweep detaches the participants of one that stopped beating as of its last beat (in-process,
in-memory layer, PostgreSQL or SQLite).

The sockets here are all served by this test process; a participant is put "on a lost
process" by pointing its row at a process that last beat long ago, as a process killed without
closing its sockets leaves it. Each test moves the server's clock itself (time_machine, not
ticking) and passes the sweep its ``now``.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from audit.models import AuditEvent
from tests.video.signalling_support import (
    Person,
    Setup,
    db,
    hello,
    in_call,
    make_room,
    nothing,
    opened,
    receive,
    run_async,
    send,
)
from video import liveness
from video.liveness import FORGET_AFTER, Heartbeat, heartbeat, lost_processes_sweep, process_beat
from video.models import AttendanceInterval, Participant, WebProcess
from video.selectors import booking_attendance

pytestmark = pytest.mark.django_db(transaction=True)

DEAD = 60  # VIDEO_PROCESS_DEAD_SECONDS


@pytest.fixture(autouse=True)
def _in_memory_layer(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.VIDEO_PROCESS_BEAT_SECONDS = 15
    settings.VIDEO_PROCESS_DEAD_SECONDS = DEAD
    settings.VIDEO_RESUME_SECONDS = 60


@pytest.fixture
def setup(db: None) -> Setup:
    return make_room()


async def report(ws: Any, state: str) -> None:
    """A ``connection`` report, handled once the frame sent after it is answered."""
    await send(ws, "connection", state=state)
    await send(ws, "ping")
    assert (await receive(ws, "error"))["code"] == "unknown_type"


async def served_by_lost_process(person: Person, *, last_beat: datetime) -> uuid.UUID:
    """Make ``person``'s socket one served by a process that last beat at ``last_beat``."""

    def move() -> uuid.UUID:
        lost = WebProcess.objects.create(id=uuid.uuid4(), started_at=last_beat, beat_at=last_beat)
        assert Participant.objects.filter(pk=person.participant.pk).update(process=lost) == 1
        return lost.pk

    result: uuid.UUID = await db(move)
    return result


async def this_process_beats(now: datetime) -> None:
    await db(process_beat, process_id=heartbeat.id, now=now)


def intervals(person: Person) -> list[tuple[str, datetime, datetime | None, str]]:
    return [
        (row.kind, row.started_at, row.ended_at, row.end_reason)
        for row in AttendanceInterval.objects.filter(participant=person.participant).order_by(
            "kind", "started_at"
        )
    ]


def disconnections(setup: Setup) -> list[tuple[str, str, dict[str, Any]]]:
    """The room's audited disconnections (the trail outlives each test's rows)."""
    return list(
        AuditEvent.objects.filter(
            action="video.room.disconnected", resource_id=str(setup.room.booking_id)
        )
        .order_by("id")
        .values_list("actor_label", "patient_id", "details")
    )


@run_async
async def test_a_participant_on_a_lost_process_is_detached_as_of_its_last_beat(
    setup: Setup,
) -> None:
    """The client's process last beat 30 s into the call and was silent for longer than the
    limit: the client is away, every one of its intervals closed at that beat (so the outage
    is not attended time), its place kept for a resume from the sweep on, the disconnection
    audited as the system's, and the therapist, on a live process, told ``peer-left``."""
    t0 = timezone.now().replace(microsecond=0)
    at = lambda seconds: t0 + timedelta(seconds=seconds)  # noqa: E731
    with time_machine.travel(t0, tick=False) as clock:
        therapist, client, _ = await in_call(setup)
        await report(therapist, "connected")
        await report(client, "connected")
        lost = await served_by_lost_process(setup.client, last_beat=at(30))
        clock.shift(200)
        await this_process_beats(at(200))
        assert await db(lost_processes_sweep, now=at(200)) == 1
        left = await receive(therapist, "peer-left")
        await nothing(therapist, client)
        attendance = await db(booking_attendance, booking=setup.room.booking, now=at(200))
    assert left["participant"] == setup.client.pid
    assert left["reason"] == "disconnected"
    me = await setup.client.arefresh()
    assert (me.state, me.channel_name, me.process_id) == ("away", "", None)
    assert me.resume_until == at(200 + 60)
    assert await db(intervals, setup.client) == [
        ("in_call", t0, at(30), "detached"),
        ("media", t0, at(30), "detached"),
        ("present", t0, at(30), "detached"),
    ]
    assert [end for _, _, end, _ in await db(intervals, setup.therapist)] == [None, None, None]
    assert attendance.attended.seconds == 30
    details = {
        "room": str(setup.room.pk),
        "participant": setup.client.pid,
        "role": "client",
        "was": "in_call",
        "cause": "process_lost",
        "as_of": at(30).isoformat(),
    }
    assert await db(disconnections, setup) == [("system", setup.room.booking.client_id, details)]
    assert await db(WebProcess.objects.filter(pk=lost).exists)  # kept for FORGET_AFTER
    for ws in (therapist, client):
        await ws.disconnect()


@run_async
async def test_a_lost_process_row_goes_only_a_day_after_its_last_beat(setup: Setup) -> None:
    """Nobody on it any more, a lost process's row is kept for ``FORGET_AFTER`` and then
    removed; the live process's row stays."""
    t0 = timezone.now().replace(microsecond=0)
    lost = await db(lambda: WebProcess.objects.create(id=uuid.uuid4(), started_at=t0, beat_at=t0))
    await this_process_beats(t0 + FORGET_AFTER)
    assert await db(lost_processes_sweep, now=t0 + FORGET_AFTER) == 0
    assert await db(WebProcess.objects.filter(pk=lost.pk).exists)
    later = t0 + FORGET_AFTER + timedelta(seconds=1)
    assert await db(lost_processes_sweep, now=later) == 0
    assert not await db(WebProcess.objects.filter(pk=lost.pk).exists)
    assert await db(WebProcess.objects.filter(pk=heartbeat.id).exists)


@run_async
async def test_a_process_taken_for_lost_that_was_only_slow_still_serves_hellos(
    setup: Setup,
) -> None:
    """This process beat longer ago than the sweep's limit (stalled, or beating more slowly than
    the sweep's limit assumes) and a sweep ran: its row is still there, so a hello on it, which
    names it, attaches (it once failed, the row removed, until the next beat)."""
    therapist = await opened(setup.room.pk)  # this process beats from here on
    await hello(therapist, await setup.therapist.atoken())
    await receive(therapist, "waiting-list")
    now = timezone.now()
    await this_process_beats(now - timedelta(seconds=DEAD + 1))
    assert await db(lost_processes_sweep, now=now) == 1  # the therapist, taken for lost
    client = await opened(setup.room.pk)
    assert (await hello(client, await setup.client.atoken()))["state"] == "waiting"
    assert (await setup.client.arefresh()).process_id == heartbeat.id
    for ws in (therapist, client):
        await ws.disconnect()


@run_async
async def test_a_participant_on_a_live_process_is_untouched(setup: Setup) -> None:
    """A process silent for exactly the limit is alive: nobody is detached or told anything."""
    t0 = timezone.now().replace(microsecond=0)
    with time_machine.travel(t0, tick=False):
        therapist, client, _ = await in_call(setup)
        await report(client, "connected")
        await served_by_lost_process(setup.client, last_beat=t0)
        assert await db(lost_processes_sweep, now=t0 + timedelta(seconds=DEAD)) == 0
        await nothing(therapist, client)
    for person in (setup.therapist, setup.client):
        me = await person.arefresh()
        assert me.state == "in_call" and me.channel_name and me.process_id is not None
        assert all(end is None for _, _, end, _ in await db(intervals, person))
    assert await db(disconnections, setup) == []
    await send(client, "media", audio=False, video=True)  # the socket still holds the place
    assert (await receive(therapist, "peer-media"))["audio"] is False
    for ws in (therapist, client):
        await ws.disconnect()


@run_async
async def test_a_second_sweep_changes_nothing(setup: Setup) -> None:
    t0 = timezone.now().replace(microsecond=0)
    sweep_at = t0 + timedelta(seconds=200)
    with time_machine.travel(t0, tick=False):
        therapist, client, _ = await in_call(setup)
        await served_by_lost_process(setup.client, last_beat=t0)
        await this_process_beats(sweep_at)
        assert await db(lost_processes_sweep, now=sweep_at) == 1
        await receive(therapist, "peer-left")
        before = (
            await db(lambda: list(Participant.objects.order_by("pk").values())),
            await db(intervals, setup.client),
            await db(disconnections, setup),
            await db(lambda: list(WebProcess.objects.values())),
        )
        assert await db(lost_processes_sweep, now=sweep_at + timedelta(seconds=60)) == 0
        await nothing(therapist, client)
        after = (
            await db(lambda: list(Participant.objects.order_by("pk").values())),
            await db(intervals, setup.client),
            await db(disconnections, setup),
            await db(lambda: list(WebProcess.objects.values())),
        )
    assert after == before
    for ws in (therapist, client):
        await ws.disconnect()


@run_async
async def test_the_detached_participant_resumes_its_place(setup: Setup) -> None:
    """After the sweep the client comes back on a live process with its resume token: in the
    call again without a new admission, and a new round for both."""
    therapist = await opened(setup.room.pk)
    await hello(therapist, await setup.therapist.atoken())
    await receive(therapist, "waiting-list")
    client = await opened(setup.room.pk)
    resume = (await hello(client, await setup.client.atoken()))["resume"]
    await receive(client, "waiting")
    await receive(therapist, "waiting-list")
    await send(therapist, "admit", participant=setup.client.pid)
    await receive(client, "admitted")
    await receive(client, "peer-joined")
    await receive(therapist, "waiting-list")
    await receive(therapist, "peer-joined")
    now = timezone.now()
    await served_by_lost_process(setup.client, last_beat=now - timedelta(seconds=DEAD + 1))
    await this_process_beats(now)
    assert await db(lost_processes_sweep, now=now) == 1
    await receive(therapist, "peer-left")
    again = await opened(setup.room.pk)
    joined = await hello(again, await setup.client.atoken(), resume=resume)
    assert joined["state"] == "in_call"
    assert (await receive(therapist, "peer-joined"))["peer"]["participant"] == setup.client.pid
    await receive(again, "peer-joined")
    assert (await setup.client.arefresh()).process_id == heartbeat.id
    for ws in (therapist, client, again):
        await ws.disconnect()


@run_async
async def test_a_place_taken_back_before_the_sweep_is_left_alone(setup: Setup) -> None:
    """The client reconnected (a new socket on a live process) before the sweep ran: its place
    is the new socket's, and nothing is detached."""
    therapist, client, _ = await in_call(setup)
    now = timezone.now()
    lost = await served_by_lost_process(setup.client, last_beat=now - timedelta(seconds=DEAD + 1))
    again = await opened(setup.room.pk)
    await hello(again, await setup.client.atoken())
    await this_process_beats(now)
    assert await db(lost_processes_sweep, now=now) == 0
    me = await setup.client.arefresh()
    assert me.process_id == heartbeat.id and me.channel_name
    assert await db(WebProcess.objects.filter(pk__in=[lost, heartbeat.id]).count) == 2
    for ws in (therapist, client, again):
        await ws.disconnect()


class Beats:
    """``Heartbeat.sleep`` for a test: each sleep is reported, and ends when released."""

    def __init__(self) -> None:
        self.slept: asyncio.Queue[float] = asyncio.Queue()
        self.released: asyncio.Queue[None] = asyncio.Queue()

    async def sleep(self, seconds: float) -> None:
        await self.slept.put(seconds)
        await self.released.get()

    async def next_sleep(self) -> float:
        return await asyncio.wait_for(self.slept.get(), timeout=2)


@run_async
async def test_a_process_beats_while_it_serves_sockets(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first hello makes the process's row (the participant row names it); the process
    then beats every VIDEO_PROCESS_BEAT_SECONDS, once however many sockets it serves."""
    beats = Beats()
    monkeypatch.setattr(Heartbeat, "sleep", staticmethod(beats.sleep))
    t0 = timezone.now().replace(microsecond=0)
    with time_machine.travel(t0, tick=False) as clock:
        therapist = await opened(setup.room.pk)
        await hello(therapist, await setup.therapist.atoken())
        assert await beats.next_sleep() == 15
        client = await opened(setup.room.pk)
        await hello(client, await setup.client.atoken())
        row = await db(WebProcess.objects.get, pk=heartbeat.id)
        assert (row.started_at, row.beat_at) == (t0, t0)
        for person in (setup.therapist, setup.client):
            assert (await person.arefresh()).process_id == heartbeat.id
        clock.shift(15)
        await beats.released.put(None)
        assert await beats.next_sleep() == 15
        assert beats.slept.empty()  # one heartbeat for both sockets
        row = await db(WebProcess.objects.get, pk=heartbeat.id)
        assert (row.started_at, row.beat_at) == (t0, t0 + timedelta(seconds=15))
        for ws in (therapist, client):
            await ws.disconnect()


@run_async
async def test_a_forked_worker_beats_under_its_own_id(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that imported the app before forking its workers (a preloading server): each
    worker is its own process to the sweep, so one killed is found although the others beat."""
    parent = await heartbeat.process_id()
    monkeypatch.setattr(liveness.os, "getpid", lambda: -1)
    client = await opened(setup.room.pk)
    await hello(client, await setup.client.atoken())
    worker = (await setup.client.arefresh()).process_id
    assert worker == heartbeat.id != parent
    assert await db(WebProcess.objects.filter(pk__in=[parent, worker]).count) == 2
    await client.disconnect()
