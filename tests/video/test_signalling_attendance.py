"""Attendance over the signalling socket (video.signalling, in-process, in-memory layer).

A participant in the call reports its peer connection's state (``connection``); the server
records media intervals at its own time of receipt, only while that socket holds the place in
the call, and closes them when the socket goes. Each test moves the server's clock itself
(time_machine, not ticking): the recorded times are exactly the clock's.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent
from tests.video.signalling_support import (
    Setup,
    closed_with,
    db,
    hello,
    make_room,
    nothing,
    opened,
    receive,
    run_async,
    send,
)
from video.models import AttendanceInterval, Participant, WebProcess
from video.selectors import booking_attendance
from video.signalling import participant_attach

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _in_memory_layer(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def setup(db: None) -> Setup:
    return make_room()


def intervals(setup: Setup, kind: str) -> list[tuple[str, datetime, datetime | None, str]]:
    """(role, start, end, end reason) of the room's intervals of ``kind``, oldest first."""
    return [
        (row.participant.role, row.started_at, row.ended_at, row.end_reason)
        for row in AttendanceInterval.objects.filter(participant__room=setup.room, kind=kind)
        .select_related("participant")
        .order_by("started_at", "pk")
    ]


async def report(ws: Any, state: str, **extra: Any) -> None:
    """Send a ``connection`` report and wait until it has been handled: nothing answers it, so
    a frame answered at once follows it (a socket's frames are handled in order)."""
    await send(ws, "connection", state=state, **extra)
    await send(ws, "ping")
    assert (await receive(ws, "error"))["code"] == "unknown_type"


async def in_call(setup: Setup) -> tuple[Any, Any]:
    therapist = await opened(setup.room.pk)
    await hello(therapist, await setup.therapist.atoken())
    await receive(therapist, "waiting-list")
    client = await opened(setup.room.pk)
    await hello(client, await setup.client.atoken())
    await receive(client, "waiting")
    await receive(therapist, "waiting-list")
    await send(therapist, "admit", participant=setup.client.pid)
    await receive(client, "admitted")
    await receive(client, "peer-joined")
    await receive(therapist, "waiting-list")
    await receive(therapist, "peer-joined")
    return therapist, client


@run_async
async def test_reports_open_and_close_media_intervals_at_the_servers_time(setup: Setup) -> None:
    """Both sides report connected, the client drops its media for two minutes and comes back:
    the intervals are the server's receipt times, and the attended time is the overlap."""
    t0 = timezone.now().replace(microsecond=0)
    with time_machine.travel(t0, tick=False) as clock:
        therapist, client = await in_call(setup)
        await report(therapist, "connected")
        clock.shift(10)
        await report(client, "connected")
        clock.shift(60)
        await report(client, "disconnected")
        clock.shift(120)
        await report(client, "connected")
        await report(client, "connected")  # a repeat changes nothing
        clock.shift(30)
        await report(therapist, "disconnected")
        await nothing(therapist, client)  # nobody is told
        media = await db(intervals, setup, "media")
        attendance = await db(booking_attendance, booking=setup.room.booking, now=timezone.now())
        await send(therapist, "end")
        await receive(client, "ended")
    at = lambda seconds: t0 + timedelta(seconds=seconds)  # noqa: E731
    assert media == [
        ("therapist", at(0), at(220), "reported"),
        ("client", at(10), at(70), "reported"),
        ("client", at(190), None, ""),
    ]
    assert attendance.attended.spans == [(at(10), at(70)), (at(190), at(220))]
    assert (attendance.attended.seconds, attendance.attended.actual_start) == (90, at(10))
    assert attendance.attended.actual_end == at(220)
    # presence and admission: from hello and from the admit, closed when the room ended
    for kind in ("present", "in_call"):
        assert await db(intervals, setup, kind) == [
            ("therapist", at(0), at(220), "ended"),
            ("client", at(0), at(220), "ended"),
        ]
    actions = await db(
        lambda: list(
            AuditEvent.objects.filter(  # this room's: the trail outlives each test's rows
                action__startswith="video.room.media_", resource_id=str(setup.room.booking_id)
            )
            .order_by("id")
            .values_list("action", "details")
        )
    )
    assert [a for a, _ in actions] == [
        "video.room.media_connected",
        "video.room.media_connected",
        "video.room.media_disconnected",
        "video.room.media_connected",
        "video.room.media_disconnected",
    ]
    assert set(actions[0][1]) == {"room", "participant", "role"}


@run_async
async def test_a_waiting_client_cannot_report_a_connection(setup: Setup) -> None:
    """Cross-checked with presence: until admitted, a report is refused (not_admitted) and
    nothing is recorded."""
    client = await opened(setup.room.pk)
    await hello(client, await setup.client.atoken())
    await receive(client, "waiting")
    await send(client, "connection", state="connected")
    error = await receive(client, "error")
    assert (error["code"], error["ref"]) == ("not_admitted", "connection")
    assert await db(intervals, setup, "media") == []
    assert [row[0] for row in await db(intervals, setup, "present")] == ["client"]
    assert await db(intervals, setup, "in_call") == []
    await client.disconnect()


@run_async
async def test_the_socket_closing_ends_the_interval_at_that_time(setup: Setup) -> None:
    """A client whose socket drops while its peer connection still says connected: its media
    interval (and presence) ends when the socket closed, whatever it reports later."""
    t0 = timezone.now().replace(microsecond=0)
    with time_machine.travel(t0, tick=False) as clock:
        therapist, client = await in_call(setup)
        await report(therapist, "connected")
        await report(client, "connected")
        clock.shift(300)
        await client.disconnect()
        await receive(therapist, "peer-left")
        clock.shift(100)
        rows = await db(intervals, setup, "media")
        attendance = await db(booking_attendance, booking=setup.room.booking, now=timezone.now())
        await therapist.disconnect()
    assert rows[1] == ("client", t0, t0 + timedelta(seconds=300), "detached")
    assert attendance.attended.seconds == 300
    assert (await db(intervals, setup, "present"))[1][2:] == (
        t0 + timedelta(seconds=300),
        "detached",
    )


@run_async
async def test_a_replaced_socket_reports_nothing(setup: Setup) -> None:
    """The therapist opens a second socket (another tab): the first is closed 4409 and its
    interval ends as replaced; the new socket's hello opens presence again, not media (its
    peer connection reports for itself)."""
    token = await setup.therapist.atoken()
    first = await opened(setup.room.pk)
    await hello(first, token)
    await receive(first, "waiting-list")
    client = await opened(setup.room.pk)
    await hello(client, await setup.client.atoken())
    await receive(client, "waiting")
    await receive(first, "waiting-list")
    await send(first, "admit", participant=setup.client.pid)
    await receive(first, "waiting-list")
    await receive(first, "peer-joined")
    await report(first, "connected")
    await receive(client, "admitted")
    await receive(client, "peer-joined")
    second = await opened(setup.room.pk)
    await hello(second, token)
    assert await closed_with(first) == 4409
    rows = await db(intervals, setup, "media")
    assert [(role, why) for role, _, _, why in rows] == [("therapist", "replaced")]
    present = [(role, why) for role, _, _, why in await db(intervals, setup, "present")]
    assert present == [("therapist", "replaced"), ("client", ""), ("therapist", "")]
    for ws in (first, second, client):
        await ws.disconnect()


@run_async
async def test_a_skewed_client_clock_changes_nothing(setup: Setup) -> None:
    """Server time wins: a report carrying the client's own time (an hour off) is refused as
    a bad message, and the report without it is recorded at the server's time of receipt."""
    t0 = timezone.now().replace(microsecond=0)
    with time_machine.travel(t0, tick=False):
        therapist, client = await in_call(setup)
        skewed = (t0 - timedelta(hours=1)).isoformat()
        await send(client, "connection", state="connected", at=skewed)
        assert (await receive(client, "error"))["code"] == "bad_message"
        assert await db(intervals, setup, "media") == []
        await report(client, "connected")
        await send(therapist, "end")
        await receive(client, "ended")
    assert await db(intervals, setup, "media") == [("client", t0, t0, "ended")]


@run_async
async def test_leaving_for_good_closes_every_interval(setup: Setup) -> None:
    therapist, client = await in_call(setup)
    await report(client, "connected")
    await send(client, "leave")
    assert await closed_with(client) == 1000
    await receive(therapist, "peer-left")
    for kind in ("present", "in_call", "media"):
        client_rows = [row for row in await db(intervals, setup, kind) if row[0] == "client"]
        assert [row[3] for row in client_rows] == ["left"], kind
    await therapist.disconnect()


def test_a_first_hello_has_no_interval_to_close(setup: Setup) -> None:
    """Intervals are open only while a socket holds the place, so the hello of a participant
    that holds none writes its row, opens presence and audits: no UPDATE of intervals. A
    socket that replaces another closes that one's intervals (test above)."""
    now = timezone.now()
    process = WebProcess.objects.create(id=uuid.uuid4(), started_at=now, beat_at=now)
    token = setup.client.token()
    with CaptureQueriesContext(connection) as queries:
        attached, _ = participant_attach(
            room_id=setup.room.pk,
            token=token,
            resume=None,
            channel_name="first-socket",
            process_id=process.pk,
            now=now,
        )
    statements = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    interval_updates = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith("UPDATE")
        and AttendanceInterval._meta.db_table in q["sql"].split("SET")[0]
    ]
    assert interval_updates == []
    assert statements.count("UPDATE") == 1  # the participant's row
    me = Participant.objects.get(pk=setup.client.participant.pk)
    assert (me.channel_name, me.process_id, me.state) == ("first-socket", process.pk, "waiting")
    assert list(
        AttendanceInterval.objects.filter(participant=me).values_list("kind", "ended_at")
    ) == [("present", None)]
