"""The signalling socket (video.consumers on video.routing, in-memory channel layer).

Each VID case is named in its test's docstring: VID-02 (tokens), VID-03 (never in the URL),
VID-04 (waiting room), VID-05 (SDP checked before relay), VID-07 (message checks), VID-10
(audit without SDP, candidates, addresses or note text).
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from audit.models import AuditEvent
from tests.video.signalling_support import (
    CANDIDATE,
    CHROME_SDP,
    TIMEOUT,
    FrozenClock,
    GoneClient,
    PresenceState,
    Setup,
    closed_with,
    hello,
    in_call,
    make_room,
    nothing,
    opened,
    receive,
    run_async,
    send,
    socket,
    state,
)
from tests.video.signalling_support import db as db_call
from video.consumers import VideoSignalConsumer
from video.models import Participant, Room
from video.tokens import room_token_mint

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _clock(fixed_clock: datetime) -> datetime:
    return fixed_clock


@pytest.fixture(autouse=True)
def _in_memory_layer(settings: Any) -> None:
    """Each test runs on an event loop of its own; channels_redis binds its locks to the loop
    that first used them, so with REDIS_URL set a later test's loop hit a lock of an earlier
    one. The Redis layer is tested across two real processes (tests/video/test_calls.py)."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def setup(db: None) -> Setup:
    return make_room()


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
        "ice_restart": False,
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
    await db_call(setup.room.refresh_from_db)
    assert setup.room.mode == "audio"

    await send(client, "leave")
    assert await closed_with(client) == 1000
    left = await receive(therapist, "peer-left")
    assert (left["participant"], left["reason"]) == (setup.client.pid, "left")
    client_row = await setup.client.arefresh()
    assert (client_row.state, client_row.token_jti, client_row.channel_name) == ("left", "", "")
    await nothing(therapist)
    await therapist.disconnect()


# --- VID-02: the room token ------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forgeries(token: str) -> dict[str, str]:
    header, payload, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    none_header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "therapist"
    return {
        "bad-signature": f"{header}.{payload}.{flipped}",
        "alg-none": f"{none_header}.{payload}.",
        "changed-claims": f"{header}.{_b64(json.dumps(claims).encode())}.{signature}",
        "garbage": "not-a-token",
    }


async def _refused(room_id: Any, token: str) -> int:
    ws = await opened(room_id)
    await send(ws, "hello", token=token)
    code = await closed_with(ws)
    return code


@run_async
async def test_missing_expired_and_forged_tokens_close_4401(setup: Setup) -> None:
    """VID-02: a missing, expired or forged (other signature, alg none, altered claims) room
    token closes the socket 4401, with no message before the close (nothing revealed)."""
    good = await setup.client.atoken()
    assert await _refused(setup.room.pk, "") == 4401
    for token in _forgeries(good).values():
        assert await _refused(setup.room.pk, token) == 4401
    past = timezone.now() - timedelta(hours=3)
    expired = await db_call(
        room_token_mint,
        user_id=setup.client.user.pk,
        room_id=setup.room.pk,
        participant_id=setup.client.participant.pk,
        role="client",
        jti=uuid.UUID((await setup.client.arefresh()).token_jti),
        now=past,
        not_after=past + timedelta(minutes=5),
    )
    assert await _refused(setup.room.pk, expired) == 4401
    assert await state(setup.client) == PresenceState.AWAY


@run_async
async def test_other_room_other_user_and_replaced_tokens_close_4403(setup: Setup) -> None:
    """VID-02: another room's token, a token naming someone else, and a token that is no
    longer the participant's current one close the socket 4403."""
    other = await db_call(make_room, therapist=setup.therapist.user)
    assert await _refused(setup.room.pk, await other.client.atoken()) == 4403
    # this room's id in the claims, but the other room's participant
    assert await _refused(setup.room.pk, await other.client.atoken(room_id=setup.room.pk)) == 4403
    # the client's participant, but the therapist's user
    now = timezone.now()
    jti = uuid.uuid4()
    await db_call(
        Participant.objects.filter(pk=setup.client.participant.pk).update, token_jti=str(jti)
    )
    impostor = await db_call(
        room_token_mint,
        user_id=setup.therapist.user.pk,
        room_id=setup.room.pk,
        participant_id=setup.client.participant.pk,
        role="client",
        jti=jti,
        now=now,
        not_after=now + timedelta(minutes=5),
    )
    assert await _refused(setup.room.pk, impostor) == 4403
    first = await setup.client.atoken()
    await setup.client.atoken()  # a new join replaces the first token
    assert await _refused(setup.room.pk, first) == 4403


@run_async
async def test_token_replayed_after_leave_closes_4403(setup: Setup) -> None:
    """VID-02: after leaving for good, the same room token is refused (4403)."""
    token = await setup.therapist.atoken()
    ws = await opened(setup.room.pk)
    await hello(ws, token)
    await receive(ws, "waiting-list")
    await send(ws, "leave")
    assert await closed_with(ws) == 1000
    assert await _refused(setup.room.pk, token) == 4403
    events = await db_call(
        lambda: list(
            AuditEvent.objects.filter(
                action="video.room.left", resource_id=str(setup.room.booking_id)
            ).values("details")
        )
    )
    assert events and events[0]["details"]["participant"] == setup.therapist.pid


@run_async
async def test_ended_room_closes_4410(setup: Setup) -> None:
    token = await setup.client.atoken()
    await db_call(
        Room.objects.filter(pk=setup.room.pk).update,
        ended_at=timezone.now(),
        end_reason="ended_by_therapist",
    )
    assert await _refused(setup.room.pk, token) == 4410


@run_async
async def test_token_in_query_string_is_ignored(setup: Setup, settings: Any) -> None:
    """VID-03: a token in the URL's query string is never read: the socket still needs a hello
    and closes 4401 when none comes in time."""
    settings.VIDEO_HELLO_TIMEOUT_SECONDS = 0.2
    ws = await opened(setup.room.pk, query=f"token={await setup.client.atoken()}")
    assert await closed_with(ws) == 4401
    assert await state(setup.client) == PresenceState.AWAY


@run_async
async def test_token_in_subprotocol_header(setup: Setup) -> None:
    """VID-03: the token may come in Sec-WebSocket-Protocol; the server answers with the
    protocol name, never echoing the token."""
    token = await setup.therapist.atoken()
    ws = socket(setup.room.pk, subprotocols=["telehealth.video.v1", f"token.{token}"])
    connected, subprotocol = await ws.connect(timeout=2)
    assert (connected, subprotocol) == (True, "telehealth.video.v1")
    assert (await receive(ws, "joined"))["state"] == "in_call"
    await ws.disconnect()


@run_async
async def test_first_message_not_hello_closes_4400(setup: Setup) -> None:
    for frame in ('{"v": 1, "type": "offer", "round": 1, "sdp": "v=0"}', "nope", '{"v": 2}'):
        ws = await opened(setup.room.pk)
        await ws.send_to(text_data=frame)
        assert await closed_with(ws) == 4400


# --- VID-04: the waiting room ----------------------------------------------------------------


@run_async
async def test_waiting_client_reaches_nobody(setup: Setup) -> None:
    """VID-04: before admission, a client's offer, answer, candidate, media, share, mode and
    restart are refused (not_admitted) and the therapist receives nothing."""
    therapist = await opened(setup.room.pk)
    await hello(therapist, await setup.therapist.atoken())
    await receive(therapist, "waiting-list")
    client = await opened(setup.room.pk)
    await hello(client, await setup.client.atoken())
    await receive(client, "waiting")
    await receive(therapist, "waiting-list")
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("offer", {"round": 1, "sdp": CHROME_SDP}),
        ("answer", {"round": 1, "sdp": CHROME_SDP}),
        ("candidate", {"round": 1, "candidate": CANDIDATE}),
        ("media", {"audio": False, "video": False}),
        ("share", {"round": 1, "state": "started", "mid": "2"}),
        ("mode", {"mode": "audio"}),
        ("restart", {}),
    ]
    for kind, fields in attempts:
        await send(client, kind, **fields)
        error = await receive(client, "error")
        assert (error["code"], error["ref"]) == ("not_admitted", kind)
    for kind in ("admit", "deny"):
        await send(client, kind, participant=setup.therapist.pid)
        assert (await receive(client, "error"))["code"] == "forbidden"
    await nothing(therapist, client)
    await therapist.disconnect()
    await client.disconnect()


@run_async
async def test_waiting_client_sees_status_not_other_clients(setup: Setup) -> None:
    """VID-04: a waiting client sees the therapist's status (not_arrived, ready,
    in_another_session), never who else waits."""
    client = await opened(setup.room.pk)
    joined = await hello(client, await setup.client.atoken())
    assert joined["peers"] == []
    assert (await receive(client, "waiting"))["therapist"] == "not_arrived"
    # the therapist arrives in another of their rooms: busy elsewhere
    other = await db_call(make_room, therapist=setup.therapist.user)
    elsewhere = await opened(other.room.pk)
    await hello(elsewhere, await other.therapist.atoken())
    await receive(elsewhere, "waiting-list")
    assert (await receive(client, "waiting"))["therapist"] == "in_another_session"
    await elsewhere.disconnect()
    assert (await receive(client, "waiting"))["therapist"] == "not_arrived"
    therapist = await opened(setup.room.pk)
    await hello(therapist, await setup.therapist.atoken())
    assert (await receive(client, "waiting"))["therapist"] == "ready"
    await receive(therapist, "waiting-list")
    await nothing(client)
    await therapist.disconnect()
    assert (await receive(client, "waiting"))["therapist"] == "not_arrived"
    await client.disconnect()


@run_async
async def test_notes_allowed_refused_rate_limited_and_audited(setup: Setup) -> None:
    """VID-04, VID-10: a waiting client's note reaches the therapist only when allowed, one
    per interval; it is audited by its length, never its text."""
    therapist = await opened(setup.room.pk)
    await hello(therapist, await setup.therapist.atoken())
    await receive(therapist, "waiting-list")
    client = await opened(setup.room.pk)
    await hello(client, await setup.client.atoken())
    await receive(client, "waiting")
    await receive(therapist, "waiting-list")

    await send(client, "note", text="  Running \u202e5 minutes late\x00 ")
    note = await receive(therapist, "note")
    assert (note["participant"], note["text"]) == (setup.client.pid, "Running 5 minutes late")
    await send(client, "note", text="again")
    assert (await receive(client, "error"))["code"] == "rate_limited"
    await nothing(therapist)

    await send(therapist, "notes", allow=False)
    assert (await receive(client, "waiting"))["notes_allowed"] is False
    await db_call(
        Participant.objects.filter(pk=setup.client.participant.pk).update, last_note_at=None
    )
    await send(client, "note", text="let me in")
    assert (await receive(client, "error"))["code"] == "notes_off"
    await nothing(therapist)
    await send(client, "notes", allow=True)
    assert (await receive(client, "error"))["code"] == "forbidden"

    events = await db_call(
        lambda: list(
            AuditEvent.objects.filter(
                action="video.room.note", resource_id=str(setup.room.booking_id)
            ).values("details", "resource_type", "resource_id", "patient_id", "actor_id")
        )
    )
    assert len(events) == 1
    event = events[0]
    assert event["details"]["length"] == len("Running 5 minutes late")
    assert "Running" not in json.dumps(event["details"])
    assert (event["resource_type"], event["resource_id"]) == (
        "scheduling.booking",
        str(setup.room.booking_id),
    )
    assert event["patient_id"] == setup.client.user.pk
    assert event["actor_id"] == setup.client.user.pk
    await therapist.disconnect()
    await client.disconnect()


@run_async
async def test_deny_closes_4403_and_spends_the_token(setup: Setup) -> None:
    therapist = await opened(setup.room.pk)
    await hello(therapist, await setup.therapist.atoken())
    await receive(therapist, "waiting-list")
    token = await setup.client.atoken()
    client = await opened(setup.room.pk)
    await hello(client, token)
    await receive(client, "waiting")
    await receive(therapist, "waiting-list")
    await send(therapist, "deny", participant=setup.client.pid)
    assert await receive(client, "denied") == {"v": 1, "type": "denied"}
    assert await closed_with(client) == 4403
    assert (await receive(therapist, "waiting-list"))["waiting"] == []
    assert await _refused(setup.room.pk, token) == 4403
    await send(therapist, "admit", participant=setup.client.pid)
    assert (await receive(therapist, "error"))["code"] == "not_waiting"
    actions = await db_call(
        lambda: set(
            AuditEvent.objects.filter(resource_id=str(setup.room.booking_id)).values_list(
                "action", flat=True
            )
        )
    )
    assert "video.room.denied" in actions
    await therapist.disconnect()


# --- the call: rounds, reconnects, replacement, end -----------------------------------------


@run_async
async def test_wrong_state_messages_are_refused_and_not_relayed(setup: Setup) -> None:
    """VID-07: an answer from the offerer, an offer from the answerer, an older round, a
    second hello → error, and the other side receives nothing."""
    therapist, client, current = await in_call(setup)
    await send(therapist, "answer", round=current, sdp=CHROME_SDP)
    assert (await receive(therapist, "error"))["code"] == "not_your_turn"
    await send(client, "offer", round=current, sdp=CHROME_SDP)
    assert (await receive(client, "error"))["code"] == "not_your_turn"
    await send(therapist, "offer", round=current + 1, sdp=CHROME_SDP)
    assert (await receive(therapist, "error"))["code"] == "stale_round"
    await send(therapist, "hello", token="x")
    assert (await receive(therapist, "error"))["code"] == "forbidden"
    await send(client, "end")
    assert (await receive(client, "error"))["code"] == "forbidden"
    await nothing(therapist, client)
    # a restart makes the old round stale
    await send(client, "restart")
    assert (await receive(client, "peer-joined"))["round"] == current + 1
    assert (await receive(therapist, "peer-joined"))["round"] == current + 1
    await send(client, "candidate", round=current, candidate=CANDIDATE)
    assert (await receive(client, "error"))["code"] == "stale_round"
    await nothing(therapist)
    await therapist.disconnect()
    await client.disconnect()


@run_async
async def test_a_screen_share_renegotiates_within_the_round_announced_by_share(
    setup: Setup,
) -> None:
    """The therapist's share: ``share`` (started, with the mid), a second offer and answer of
    the same round, then ``share`` (stopped) and a third; each relayed as it was sent with
    ``from``. VID-07: a client's ``share`` is forbidden, one of another round stale, and a
    refused one reaches nobody. None of it is audited (as ``media``)."""
    therapist, client, current = await in_call(setup)
    events = await AuditEvent.objects.acount()
    await send(therapist, "offer", round=current, sdp=CHROME_SDP)
    await receive(client, "offer")
    await send(client, "answer", round=current, sdp=CHROME_SDP)
    await receive(therapist, "answer")
    for state_ in ("started", "stopped"):
        await send(therapist, "share", round=current, state=state_, mid="2")
        assert await receive(client, "share") == {
            "v": 1,
            "type": "share",
            "round": current,
            "state": state_,
            "mid": "2",
            "from": setup.therapist.pid,
        }
        await send(therapist, "offer", round=current, sdp=CHROME_SDP)
        assert (await receive(client, "offer"))["round"] == current
        await send(client, "answer", round=current, sdp=CHROME_SDP)
        assert (await receive(therapist, "answer"))["round"] == current
    await send(client, "share", round=current, state="started", mid="3")
    assert (await receive(client, "error"))["code"] == "forbidden"
    await send(therapist, "share", round=current + 1, state="started", mid="2")
    assert (await receive(therapist, "error"))["code"] == "stale_round"
    await nothing(therapist, client)
    assert await AuditEvent.objects.acount() == events
    await therapist.disconnect()
    await client.disconnect()


@run_async
async def test_both_sides_restarting_the_same_round_make_one_new_round(setup: Setup) -> None:
    """A failed media path is seen by both sides at once: each asks to replace the round it is
    in; the first makes the next round, the second is told it is stale, and nobody gets a
    second peer-joined."""
    therapist, client, current = await in_call(setup)
    await send(client, "restart", round=current)
    assert (await receive(client, "peer-joined"))["round"] == current + 1
    assert (await receive(therapist, "peer-joined"))["round"] == current + 1
    await send(therapist, "restart", round=current)  # the same failure, seen a moment later
    refused = await receive(therapist, "error")
    assert (refused["code"], refused["ref"]) == ("stale_round", "restart")
    await nothing(therapist, client)
    assert (await Room.objects.aget(pk=setup.room.pk)).round == current + 1
    await therapist.disconnect()
    await client.disconnect()


@pytest.mark.parametrize(
    ("therapist_says", "client_says", "restarts_ice"),
    [(True, True, True), (True, None, False), (None, True, False), (False, True, False)],
)
@run_async
async def test_a_restart_round_restarts_ice_only_when_both_sides_say_they_can(
    setup: Setup, therapist_says: bool | None, client_says: bool | None, restarts_ice: bool
) -> None:
    """Browsers restart ICE on the peer connection they have; aiortc (the Python client)
    cannot and builds a new one, whose new DTLS certificate a browser's running connection
    would have to take. So a round replacing a failed one is an ICE restart (``ice_restart``
    in both peer-joined) only when both hellos said ``ice_restart``; the admission's round
    never is (there is no connection yet)."""
    therapist, client, current = await in_call(setup, ice_restart=(therapist_says, client_says))
    admitted = await Participant.objects.aget(pk=setup.client.pid)
    assert admitted.ice_restart is bool(client_says)
    await send(client, "restart", round=current)
    for ws in (client, therapist):
        peer = await receive(ws, "peer-joined")
        assert (peer["round"], peer["ice_restart"]) == (current + 1, restarts_ice)
    await nothing(therapist, client)
    await therapist.disconnect()
    await client.disconnect()


@run_async
async def test_a_round_after_a_reconnect_is_never_an_ice_restart(setup: Setup) -> None:
    """A client that comes back on a new socket (resume) has lost its peer connection, and the
    therapist closed theirs on peer-left: the new round builds new ones, both sides able to
    restart ICE or not."""
    therapist = await opened(setup.room.pk)
    await hello(therapist, await setup.therapist.atoken(), ice_restart=True)
    await receive(therapist, "waiting-list")
    client = await opened(setup.room.pk)
    token = await setup.client.atoken()
    resume = (await hello(client, token, ice_restart=True))["resume"]
    await receive(client, "waiting")
    await receive(therapist, "waiting-list")
    await send(therapist, "admit", participant=setup.client.pid)
    await receive(client, "admitted")
    first = await receive(client, "peer-joined")
    await receive(therapist, "waiting-list")
    assert (await receive(therapist, "peer-joined"))["ice_restart"] is False
    assert first["ice_restart"] is False
    await client.disconnect()
    await receive(therapist, "peer-left")
    again = await opened(setup.room.pk)
    assert (await hello(again, token, resume=resume, ice_restart=True))["state"] == "in_call"
    for ws in (again, therapist):
        peer = await receive(ws, "peer-joined")
        assert (peer["round"], peer["ice_restart"]) == (first["round"] + 1, False)
    await therapist.disconnect()
    await again.disconnect()


@run_async
async def test_insecure_sdp_is_refused_and_not_relayed(setup: Setup) -> None:
    """VID-05: an offer whose SDP is insecure or unparsable is refused and not relayed."""
    therapist, client, current = await in_call(setup)
    cases = {
        "insecure_sdp": CHROME_SDP.replace("a=fingerprint:sha-256", "a=fingerprint:sha-1"),
        "bad_sdp": "v=0\r\nthis is not sdp\r\n",
    }
    for code, sdp in cases.items():
        await send(therapist, "offer", round=current, sdp=sdp)
        error = await receive(therapist, "error")
        assert (error["code"], error["ref"]) == (code, "offer")
    await nothing(client)
    await therapist.disconnect()
    await client.disconnect()


@run_async
async def test_unknown_type_and_wrong_version_not_relayed(setup: Setup) -> None:
    """VID-07: unknown type, v=2, extra fields, binary frame → error, nothing relayed."""
    therapist, client, current = await in_call(setup)
    frames = {
        json.dumps({"v": 1, "type": "shout", "text": "hi"}): "unknown_type",
        json.dumps(
            {"v": 2, "type": "offer", "round": current, "sdp": CHROME_SDP}
        ): "unsupported_version",
        json.dumps({"v": 1, "type": "media", "audio": True, "video": True, "x": 1}): "bad_message",
        "{": "bad_message",
    }
    for frame, code in frames.items():
        await therapist.send_to(text_data=frame)
        assert (await receive(therapist, "error"))["code"] == code
    await therapist.send_to(bytes_data=b"\x00\x01")
    assert (await receive(therapist, "error"))["code"] == "bad_message"
    await nothing(client)
    await therapist.disconnect()
    await client.disconnect()


@run_async
async def test_oversized_frame_closes_4413(setup: Setup, settings: Any) -> None:
    """VID-07: a frame over VIDEO_SIGNAL_MAX_FRAME_BYTES closes the socket 4413."""
    therapist, client, current = await in_call(setup)
    settings.VIDEO_SIGNAL_MAX_FRAME_BYTES = 1024
    await send(therapist, "offer", round=current, sdp="v=0\r\n" + "a=x\r\n" * 400)
    assert await closed_with(therapist) == 4413
    left = await receive(client, "peer-left")
    assert left["reason"] == "disconnected"
    await nothing(client)
    await client.disconnect()


@run_async
async def test_flood_rate_limited_then_closed_4429(
    setup: Setup, settings: Any, monkeypatch: Any
) -> None:
    """VID-07: more than the burst → rate_limited errors (not relayed); a connection that
    keeps flooding is closed 4429."""
    monkeypatch.setattr(VideoSignalConsumer, "clock", staticmethod(FrozenClock()))
    settings.VIDEO_SIGNAL_BURST = 12
    therapist, client, current = await in_call(setup)
    # the therapist has used hello and admit; the burst allows 10 more at this frozen instant
    for _ in range(10):
        await send(therapist, "candidate", round=current, candidate=CANDIDATE)
        await receive(client, "candidate")
    await send(therapist, "candidate", round=current, candidate=CANDIDATE)
    assert (await receive(therapist, "error"))["code"] == "rate_limited"
    await send(therapist, "candidate", round=current, candidate=CANDIDATE)
    assert (await receive(therapist, "error"))["code"] == "rate_limited"
    await nothing(client)
    await send(therapist, "candidate", round=current, candidate=CANDIDATE)
    assert await closed_with(therapist) == 4429
    assert (await receive(client, "peer-left"))["reason"] == "disconnected"
    await client.disconnect()


@run_async
async def test_reconnect_with_resume_token_gets_back_in_call(setup: Setup) -> None:
    """A dropped client comes back with its resume token: in the call (not waiting), the
    therapist sees peer-left (disconnected) then peer-joined with a new round; audited as a
    reconnect."""
    therapist = await opened(setup.room.pk)
    await hello(therapist, await setup.therapist.atoken())
    await receive(therapist, "waiting-list")
    client = await opened(setup.room.pk)
    token = await setup.client.atoken()
    resume = (await hello(client, token))["resume"]
    await receive(client, "waiting")
    await receive(therapist, "waiting-list")
    await send(therapist, "admit", participant=setup.client.pid)
    await receive(client, "admitted")
    first = (await receive(client, "peer-joined"))["round"]
    await receive(therapist, "waiting-list")
    await receive(therapist, "peer-joined")
    # the client's joined message was sent before admission: its resume token is still valid
    await client.disconnect()
    left = await receive(therapist, "peer-left")
    assert (left["participant"], left["reason"]) == (setup.client.pid, "disconnected")
    row = await setup.client.arefresh()
    assert (row.state, row.channel_name) == ("away", "")
    assert row.resume_until is not None and row.resume_until > timezone.now()

    again = await opened(setup.room.pk)
    joined = await hello(again, token, resume=resume)
    assert joined["state"] == "in_call"
    assert [p["participant"] for p in joined["peers"]] == [setup.therapist.pid]
    peer = await receive(again, "peer-joined")
    assert (peer["round"], peer["offerer"]) == (first + 1, False)
    peer = await receive(therapist, "peer-joined")
    assert (peer["round"], peer["peer"]["participant"]) == (first + 1, setup.client.pid)
    actions = await db_call(
        lambda: list(
            AuditEvent.objects.filter(resource_id=str(setup.room.booking_id)).values_list(
                "action", flat=True
            )
        )
    )
    assert "video.room.reconnected" in actions
    await again.disconnect()
    await receive(therapist, "peer-left")

    # without the resume token (or with a wrong one) the client waits again
    third = await opened(setup.room.pk)
    assert (await hello(third, token, resume="wrong"))["state"] == "waiting"
    await third.disconnect()
    await therapist.disconnect()


@run_async
async def test_a_client_gone_mid_send_still_has_its_leave_and_disconnect_handled(
    setup: Setup,
) -> None:
    """A client sends ``leave`` and closes its page while an offer is on its way to it: the
    send of the offer fails (the server raises ``OSError``), and the socket still handles the
    ``leave`` and the disconnect queued behind it. The therapist is told the client left, and
    the place is given up."""
    gone = GoneClient()
    therapist, client, round_ = await in_call(setup, client_app=gone)
    gone.gone = True
    await send(therapist, "offer", round=round_, sdp=CHROME_SDP)
    await asyncio.wait_for(gone.refused.wait(), TIMEOUT)
    await send(client, "leave")
    await client.disconnect()
    left = await receive(therapist, "peer-left")
    assert (left["participant"], left["reason"]) == (setup.client.pid, "left")
    assert await state(setup.client) == PresenceState.LEFT
    await therapist.disconnect()


@run_async
async def test_second_socket_replaces_the_first(setup: Setup) -> None:
    """A second socket of the same participant takes the place; the first is closed 4409."""
    token = await setup.therapist.atoken()
    first = await opened(setup.room.pk)
    await hello(first, token)
    await receive(first, "waiting-list")
    second = await opened(setup.room.pk)
    await hello(second, token)
    assert await closed_with(first) == 4409
    await receive(second, "waiting-list")
    await first.disconnect()  # the old socket's disconnect does not take the place back
    row = await setup.therapist.arefresh()
    assert (row.state, bool(row.channel_name)) == ("in_call", True)
    await second.disconnect()


@run_async
async def test_end_by_therapist_closes_everyone_4410(setup: Setup) -> None:
    therapist, client, _ = await in_call(setup)
    await send(therapist, "end")
    for ws in (therapist, client):
        assert (await receive(ws, "ended"))["reason"] == "ended_by_therapist"
        assert await closed_with(ws) == 4410
    await db_call(setup.room.refresh_from_db)
    assert setup.room.end_reason == "ended_by_therapist"
    assert await state(setup.client) == PresenceState.LEFT


@run_async
async def test_window_close_ends_the_call(db: None, settings: Any, monkeypatch) -> None:
    """At the window's end a timer sends ended (window_closed) and closes 4410. The timer's wait
    moves the clock to the window's end instead of sleeping (time_machine)."""
    settings.VIDEO_ROOM_GRACE_MINUTES = 0
    now = timezone.now()
    # a 2-minute session that started a minute ago: the window closes in a minute
    setup = await db_call(make_room, start=now - timedelta(minutes=1), minutes=2)
    with time_machine.travel(now, tick=True) as traveller:

        async def until_the_end(delay: float) -> None:
            traveller.shift(delay)

        monkeypatch.setattr(VideoSignalConsumer, "wait_until_window_end", until_the_end)
        therapist = await opened(setup.room.pk)
        await hello(therapist, await setup.therapist.atoken())
        first, second = await receive(therapist), await receive(therapist)
        assert {first["type"], second["type"]} == {"waiting-list", "ended"}
        ended = first if first["type"] == "ended" else second
        assert ended["reason"] == "window_closed"
        assert await closed_with(therapist) == 4410
    await db_call(setup.room.refresh_from_db)
    assert setup.room.end_reason == "window_closed"


# --- VID-10: audit --------------------------------------------------------------------------


# A candidate with an address of its own (TEST-NET-2: documentation only, never reached).
PUBLIC_CANDIDATE = {
    **CANDIDATE,
    "candidate": "candidate:1 1 udp 2122260223 198.51.100.23 50000 typ host",
}


def test_logs_have_no_sdp_candidate_address_or_note(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    """VID-10: nothing of a call's SDP, candidates, addresses or notes reaches the logs, even
    at DEBUG, including when messages are refused or a handler fails."""
    caplog.set_level("DEBUG")

    @run_async
    async def call() -> None:
        therapist, client, current = await in_call(setup)
        await send(therapist, "offer", round=current, sdp=CHROME_SDP)
        await receive(client, "offer")
        await send(client, "candidate", round=current, candidate=PUBLIC_CANDIDATE)
        await receive(therapist, "candidate")
        await send(client, "offer", round=current, sdp=CHROME_SDP)  # not the offerer: refused
        await receive(client, "error")
        await send(therapist, "offer", round=current, sdp=CHROME_SDP.replace("sha-256", "sha-1"))
        await receive(therapist, "error")
        await send(therapist, "end")
        await receive(client, "ended")

    call()
    assert caplog.records  # the run was logged (asyncio, Django's SQL at DEBUG): it was read
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    # (The database's own address may be logged by its driver: the candidate's is distinct.)
    for secret in ("candidate:", "a=fingerprint", "198.51.100.23", "v=0", "typ host"):
        assert secret not in logged


@run_async
async def test_audit_has_no_sdp_candidate_or_address(setup: Setup) -> None:
    """VID-10: connect, admit, leave and end are audited with the booking as resource and the
    client as patient; no SDP, candidate or IP address is in any detail."""
    therapist, client, current = await in_call(setup)
    await send(therapist, "offer", round=current, sdp=CHROME_SDP)
    await receive(client, "offer")
    await send(client, "candidate", round=current, candidate=CANDIDATE)
    await receive(therapist, "candidate")
    await send(therapist, "end")
    await receive(client, "ended")
    events = await db_call(
        lambda: list(
            AuditEvent.objects.filter(
                action__startswith="video.room.", resource_id=str(setup.room.booking_id)
            ).values("action", "details", "resource_type", "resource_id", "patient_id")
        )
    )
    actions = {e["action"] for e in events}
    assert {"video.room.connected", "video.room.admitted", "video.room.ended"} <= actions
    for event in events:
        assert event["resource_type"] == "scheduling.booking"
        assert event["resource_id"] == str(setup.room.booking_id)
        assert event["patient_id"] == setup.client.user.pk
        stored = json.dumps(event["details"])
        for secret in ("candidate", "a=fingerprint", "127.0.0.1", "v=0", "typ srflx"):
            assert secret not in stored
