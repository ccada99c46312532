"""The signalling socket (video.consumers on video.routing, in-memory channel layer).

Each VID case is named in its test's docstring: VID-02 (tokens), VID-03 (never in the URL),
VID-04 (waiting room), VID-05 (SDP checked before relay), VID-07 (message checks), VID-10
(audit without SDP, candidates, addresses or note text).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from audit.models import AuditEvent
from tests.video.signalling_support import (
    CANDIDATE,
    CHROME_SDP,
    PresenceState,
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
    state,
)
from video.consumers import VideoSignalConsumer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _clock(fixed_clock: datetime) -> datetime:
    return fixed_clock


@pytest.fixture
def setup(db: None) -> Setup:
    return make_room()


async def in_call(setup: Setup) -> tuple[Any, Any, int]:
    """Therapist and client in the call (admitted); returns both sockets and the round."""
    therapist = await opened(setup.room.pk)
    await hello(therapist, await setup.therapist.atoken())
    await receive(therapist, "waiting-list")
    client = await opened(setup.room.pk)
    await hello(client, await setup.client.atoken())
    await receive(client, "waiting")
    await receive(therapist, "waiting-list")
    await send(therapist, "admit", participant=setup.client.pid)
    await receive(client, "admitted")
    joined = await receive(client, "peer-joined")
    await receive(therapist, "waiting-list")
    await receive(therapist, "peer-joined")
    return therapist, client, joined["round"]


@run_async
async def test_full_flow(setup: Setup) -> None:
    """Hello → waiting → waiting-list → admit → peer-joined → offer/answer/candidate relayed
    byte for byte → media → leave → peer-left."""
    therapist = await opened(setup.room.pk)
    joined = await hello(therapist, await setup.therapist.atoken())
    assert joined["participant"] == setup.therapist.pid
    assert (joined["role"], joined["state"], joined["mode"], joined["peers"]) == (
        "therapist",
        "in_call",
        "video",
        [],
    )
    assert len(joined["resume"]) >= 43
    assert (await receive(therapist, "waiting-list"))["waiting"] == []

    client = await opened(setup.room.pk)
    joined = await hello(client, await setup.client.atoken())
    assert (joined["role"], joined["state"], joined["peers"]) == ("client", "waiting", [])
    waiting = await receive(client, "waiting")
    assert (waiting["therapist"], waiting["notes_allowed"]) == ("ready", True)
    listed = (await receive(therapist, "waiting-list"))["waiting"]
    assert [(w["participant"], w["role"]) for w in listed] == [(setup.client.pid, "client")]
    assert listed[0]["display_name"] == setup.client.user.full_name
    assert listed[0]["since"]

    await send(therapist, "admit", participant=setup.client.pid)
    assert await receive(client, "admitted") == {"v": 1, "type": "admitted"}
    peer = await receive(client, "peer-joined")
    assert peer == {
        "v": 1,
        "type": "peer-joined",
        "peer": {"participant": setup.therapist.pid, "role": "therapist"},
        "round": 1,
        "offerer": False,
    }
    assert (await receive(therapist, "waiting-list"))["waiting"] == []
    peer = await receive(therapist, "peer-joined")
    assert (peer["peer"]["participant"], peer["round"], peer["offerer"]) == (
        setup.client.pid,
        1,
        True,
    )
    assert await state(setup.client) == PresenceState.IN_CALL

    await send(therapist, "offer", round=1, sdp=CHROME_SDP)
    offer = await receive(client, "offer")
    assert offer == {
        "v": 1,
        "type": "offer",
        "round": 1,
        "sdp": CHROME_SDP,
        "from": setup.therapist.pid,
    }
    await send(client, "answer", round=1, sdp=CHROME_SDP)
    answer = await receive(therapist, "answer")
    assert (answer["sdp"], answer["from"]) == (CHROME_SDP, setup.client.pid)
    await send(client, "candidate", round=1, candidate=CANDIDATE)
    candidate = await receive(therapist, "candidate")
    assert (candidate["candidate"], candidate["round"]) == (CANDIDATE, 1)
    await send(therapist, "candidate", round=1, candidate=None)
    assert (await receive(client, "candidate"))["candidate"] is None

    await send(client, "media", audio=False, video=True)
    assert await receive(therapist, "peer-media") == {
        "v": 1,
        "type": "peer-media",
        "participant": setup.client.pid,
        "audio": False,
        "video": True,
    }
    await send(therapist, "mode", mode="audio")
    assert (await receive(client, "mode"))["by"] == setup.therapist.pid
    await db(setup.room.refresh_from_db)
    assert setup.room.mode == "audio"

    await send(client, "leave")
    assert await closed_with(client) == 1000
    left = await receive(therapist, "peer-left")
    assert (left["participant"], left["reason"]) == (setup.client.pid, "left")
    client_row = await setup.client.arefresh()
    assert (client_row.state, client_row.token_jti, client_row.channel_name) == ("left", "", "")
    await nothing(therapist)
    await therapist.disconnect()
