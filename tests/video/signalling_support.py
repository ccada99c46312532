"""Helpers for the signalling tests: a room with its two participants and their room tokens,
sockets on video.routing (in-memory channel layer), and async tests run without a plugin."""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from api.models import Role, User
from scheduling.models import Booking, TherapistProfile
from tests.factories import make_user
from tests.scheduling.conftest import make_booking, make_therapist
from video.models import Participant, ParticipantRole, PresenceState, Room
from video.routing import websocket_urlpatterns
from video.tokens import room_token_mint

CHROME_SDP = (Path(__file__).parent / "fixtures" / "chrome_offer.sdp").read_bytes().decode()
CANDIDATE = {
    "candidate": "candidate:842163049 1 udp 1677729535 127.0.0.1 50000 typ srflx",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
    "usernameFragment": "Xk3v",
}
TIMEOUT = 2  # seconds a test waits for an expected message before failing


def run_async(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """An async test body run on its own loop (pytest-asyncio is not a dependency); ORM calls
    in the consumer come back to the test's thread (thread-sensitive sync_to_async)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        async_to_sync(test)(*args, **kwargs)

    return wrapper


@dataclass
class Person:
    user: User
    participant: Participant

    @property
    def pid(self) -> str:
        return str(self.participant.pk)

    def token(self, *, jti: uuid.UUID | None = None, room_id: uuid.UUID | None = None) -> str:
        """A fresh room token, made the participant's current one (as a REST join does)."""
        jti = jti or uuid.uuid4()
        Participant.objects.filter(pk=self.participant.pk).update(token_jti=str(jti))
        now = timezone.now()
        return room_token_mint(
            user_id=self.user.pk,
            room_id=room_id or self.participant.room_id,
            participant_id=self.participant.pk,
            role=self.participant.role,
            jti=jti,
            now=now,
            not_after=now + timedelta(hours=2),
        )

    async def atoken(self, **kwargs: Any) -> str:
        return await sync_to_async(self.token)(**kwargs)

    def refresh(self) -> Participant:
        self.participant.refresh_from_db()
        return self.participant

    async def arefresh(self) -> Participant:
        return await sync_to_async(self.refresh)()


@dataclass
class Setup:
    room: Room
    therapist: Person
    client: Person


def make_room(
    *,
    therapist: User | None = None,
    client: User | None = None,
    start: datetime | None = None,
    minutes: int = 50,
) -> Setup:
    """A confirmed video booking that started 5 minutes ago, its room and two participants.

    For a therapist who has a booking already, the session just before their earliest one
    (ending as it starts: a therapist is never booked twice at once, and PostgreSQL's exclusion
    constraint says so), whose room is still open in its grace period."""
    now = timezone.now()
    therapist = therapist or make_user(role=Role.THERAPIST, password=None)
    client = client or make_user(role=Role.CLIENT, password=None)
    profile = TherapistProfile.objects.filter(user=therapist).first() or make_therapist(
        user=therapist, now=now, duration=minutes
    )
    if start is None:
        earliest = Booking.objects.filter(therapist=profile).order_by("start").first()
        start = (
            earliest.start - (earliest.end - earliest.start)
            if earliest is not None
            else now - timedelta(minutes=5)
        )
    booking = make_booking(therapist=profile, client=client, start=start, now=now)
    room = Room.objects.create(booking=booking, mode="video", created_at=now)
    people = [
        Participant.objects.create(room=room, user=user, role=role, created_at=now)
        for user, role in ((therapist, ParticipantRole.THERAPIST), (client, ParticipantRole.CLIENT))
    ]
    return Setup(room, Person(therapist, people[0]), Person(client, people[1]))


class GoneClient:
    """A socket application (the video sockets' by default) whose sends fail once ``gone`` is
    set, as an ASGI server's do for a client that has closed its connection (an ``OSError``;
    uvicorn's ``ClientDisconnected``). ``refused`` is set at the first send that failed."""

    def __init__(self, app: Any = None) -> None:
        self.app = app or URLRouter(websocket_urlpatterns)
        self.gone = False
        self.refused = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def send_unless_gone(message: Any) -> None:
            if self.gone:
                self.refused.set()
                raise OSError("the client has gone")
            await send(message)

        await self.app(scope, receive, send_unless_gone)


def socket(
    room_id: uuid.UUID | str,
    *,
    query: str = "",
    subprotocols: list[str] | None = None,
    app: Any = None,
) -> WebsocketCommunicator:
    path = f"/ws/video/{room_id}/" + (f"?{query}" if query else "")
    return WebsocketCommunicator(
        app or URLRouter(websocket_urlpatterns), path, subprotocols=subprotocols
    )


async def opened(room_id: uuid.UUID | str, **kwargs: Any) -> WebsocketCommunicator:
    ws = socket(room_id, **kwargs)
    connected, _ = await ws.connect(timeout=TIMEOUT)
    assert connected
    return ws


async def send(ws: WebsocketCommunicator, kind: str, **fields: Any) -> None:
    await ws.send_to(text_data=json.dumps({"v": 1, "type": kind, **fields}))


async def receive(ws: WebsocketCommunicator, kind: str | None = None) -> dict[str, Any]:
    """The next message (of ``kind``, asserted)."""
    output = await ws.receive_output(timeout=TIMEOUT)
    assert output["type"] == "websocket.send", output
    message = json.loads(output["text"])
    if kind is not None:
        assert message["type"] == kind, message
    return message


async def closed_with(ws: WebsocketCommunicator) -> int:
    """The close code the server sent next (no other message before it)."""
    output = await ws.receive_output(timeout=TIMEOUT)
    assert output["type"] == "websocket.close", output
    code: int = output["code"]
    return code


async def hello(
    ws: WebsocketCommunicator,
    token: str,
    *,
    resume: str | None = None,
    ice_restart: bool | None = None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {"token": token}
    if resume is not None:
        fields["resume"] = resume
    if ice_restart is not None:
        fields["ice_restart"] = ice_restart
    await send(ws, "hello", **fields)
    return await receive(ws, "joined")


async def nothing(*sockets: WebsocketCommunicator) -> None:
    for ws in sockets:
        assert await ws.receive_nothing(timeout=0.1)


async def state(person: Person) -> str:
    return (await person.arefresh()).state


async def db(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ORM code from an async test."""
    return await sync_to_async(fn)(*args, **kwargs)


__all__ = [
    "CANDIDATE",
    "CHROME_SDP",
    "FrozenClock",
    "GoneClient",
    "PresenceState",
    "Setup",
    "TIMEOUT",
    "closed_with",
    "db",
    "hello",
    "in_call",
    "make_room",
    "nothing",
    "opened",
    "receive",
    "run_async",
    "send",
    "socket",
    "state",
]


class FrozenClock:
    """A monotonic clock for ``VideoSignalConsumer.clock`` that moves only when told."""

    now = 100.0

    def __call__(self) -> float:
        return self.now


async def in_call(
    setup: Setup,
    *,
    client_app: Any = None,
    ice_restart: tuple[bool | None, bool | None] = (None, None),
) -> tuple[Any, Any, int]:
    """Therapist and client in the call (admitted); returns both sockets and the round.
    ``ice_restart``: what the therapist's and the client's hello say (None: nothing)."""
    therapist = await opened(setup.room.pk)
    await hello(therapist, await setup.therapist.atoken(), ice_restart=ice_restart[0])
    await receive(therapist, "waiting-list")
    client = await opened(setup.room.pk, app=client_app)
    await hello(client, await setup.client.atoken(), ice_restart=ice_restart[1])
    await receive(client, "waiting")
    await receive(therapist, "waiting-list")
    await send(therapist, "admit", participant=setup.client.pid)
    await receive(client, "admitted")
    joined = await receive(client, "peer-joined")
    await receive(therapist, "waiting-list")
    await receive(therapist, "peer-joined")
    return therapist, client, joined["round"]
