"""The messaging socket, ``/ws/messages/`` (docs/messaging.md, "Real time"; asyncapi.yaml).

One socket per open app. The first message is ``hello`` with an access token (never in the
URL); the socket then joins its user's group (``messaging.events``) and, for each conversation
named in ``resume`` (``{conversation id: last seq seen}``), sends what was missed, in order.
Afterwards every push names a message by ``seq``; the socket keeps the highest ``seq`` it sent
per conversation and reads from the database whatever lies between, so a client sees each
conversation's messages in order even when pushes from two processes cross, and a duplicate
(at-least-once) is dropped here or, by message id, in the app (MSG-04). Typing states go to the
other participant only; ``read`` moves the sender's receipt. Frames are size- and
rate-limited; the socket never crashes on input and never logs a payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from api.websocket import frame_send, in_db_thread
from messaging import realtime
from messaging.events import EVENT, user_group

logger = logging.getLogger("messaging.socket")

SUBPROTOCOL = "telehealth.messages.v1"
CLOSE_BAD_HELLO = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_TOO_LARGE = 4413
CLOSE_FLOODING = 4429
MAX_FRAME_BYTES = 8 * 1024
RATE_WINDOW_SECONDS = 10.0
RATE_MAX_FRAMES = 50
CLOSE_CODES = (CLOSE_BAD_HELLO, CLOSE_UNAUTHENTICATED, CLOSE_TOO_LARGE, CLOSE_FLOODING)
# What an app sends, what the server sends, and the error codes (asyncapi.yaml, "messages").
CLIENT_TYPES = ("hello", "typing", "read")
SERVER_TYPES = ("ready", "message", "changed", "removed", "receipt", "typing", "error")
ERROR_CODES = ("bad_message", "unknown_type", "forbidden", "not_found", "internal_error")


class ProtocolError(Exception):
    def __init__(self, code: str, detail: str) -> None:
        self.code, self.detail = code, detail
        super().__init__(code)


def _conversation_id(value: Any) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ProtocolError("bad_message", "conversation must be an id.") from None


def _seq(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**53:
        raise ProtocolError("bad_message", "seq must be a whole number from 0.")
    return value


def _resume(value: Any) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > 1000:
        raise ProtocolError("bad_message", "resume maps conversation ids to seq numbers.")
    return {_conversation_id(k): _seq(v) for k, v in value.items()}


class MessagingConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.user: Any = None
        self.closed = False
        self.peers: dict[str, realtime.Peer] = {}
        self.delivered: dict[str, int] = {}
        self.frames: deque[float] = deque()
        offered = [p for p in self.scope.get("subprotocols", []) if isinstance(p, str)]
        await self.accept(SUBPROTOCOL if SUBPROTOCOL in offered else None)
        self.hello_timer = asyncio.create_task(self._hello_timeout())

    async def disconnect(self, code: int) -> None:
        self.closed = True
        self.hello_timer.cancel()
        if self.user is not None:
            await self.channel_layer.group_discard(user_group(self.user.pk), self.channel_name)

    async def _hello_timeout(self) -> None:
        await asyncio.sleep(settings.VIDEO_HELLO_TIMEOUT_SECONDS)
        if self.user is None:
            await self._close(CLOSE_UNAUTHENTICATED)

    # --- incoming frames ----------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closed:
            return
        try:
            await self._receive(text_data, bytes_data)
        except ProtocolError as error:
            if self.user is None:
                await self._close(CLOSE_BAD_HELLO)
            else:
                await self._send({"type": "error", "code": error.code, "detail": error.detail})
        except Exception as exc:  # noqa: BLE001 - never crash on input; no payload logged
            logger.error("messaging socket: %s while handling a frame", type(exc).__name__)
            await self._send({"type": "error", "code": "internal_error", "detail": "Retry."})

    async def _receive(self, text: str | None, data: bytes | None) -> None:
        if (
            data is not None
            or text is None
            or len(text.encode("utf-8", "replace")) > MAX_FRAME_BYTES
        ):
            await self._close(CLOSE_TOO_LARGE if text is not None else CLOSE_BAD_HELLO)
            return
        now = time.monotonic()
        self.frames.append(now)
        while self.frames and self.frames[0] < now - RATE_WINDOW_SECONDS:
            self.frames.popleft()
        if len(self.frames) > RATE_MAX_FRAMES:
            await self._close(CLOSE_FLOODING)
            return
        try:
            frame = json.loads(text)
        except ValueError:
            raise ProtocolError("bad_message", "Frames are JSON objects.") from None
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            raise ProtocolError("bad_message", "Frames are JSON objects with a type.")
        kind = frame["type"]
        if self.user is None:
            if kind != "hello" or not isinstance(frame.get("token"), str):
                raise ProtocolError("bad_message", "Say hello with a token first.")
            await self._hello(frame["token"], _resume(frame.get("resume")))
        elif kind == "typing":
            await self._typing(_conversation_id(frame.get("conversation")), frame.get("typing"))
        elif kind == "read":
            conversation = _conversation_id(frame.get("conversation"))
            done = await in_db_thread(realtime.mark_read)(
                user=self.user,
                conversation_id=conversation,
                seq=_seq(frame.get("seq")),
                now=timezone.now(),
            )
            if not done:
                raise ProtocolError("not_found", "No such conversation.")
        elif kind == "hello":
            raise ProtocolError("forbidden", "Already said hello.")
        else:
            raise ProtocolError("unknown_type", "Unknown message type.")

    async def _hello(self, token: str, resume: dict[str, int]) -> None:
        user = await in_db_thread(realtime.socket_user)(token)
        if user is None:
            await self._close(CLOSE_UNAUTHENTICATED)
            return
        self.user = user
        self.hello_timer.cancel()
        # Join first, read after: a message sent in between is pushed and read, never lost.
        await self.channel_layer.group_add(user_group(user.pk), self.channel_name)
        self.peers = await in_db_thread(realtime.peers_of)(user=user)
        self.delivered = {conv: peer.last_seq for conv, peer in self.peers.items()}
        await self._send(
            {
                "type": "ready",
                "conversations": {c: p.last_seq for c, p in self.peers.items()},
            }
        )
        for conversation, seq in resume.items():
            if conversation in self.peers:
                await self._catch_up(conversation, after_seq=seq, until=None)

    async def _typing(self, conversation: str, typing: Any) -> None:
        if not isinstance(typing, bool):
            raise ProtocolError("bad_message", "typing is true or false.")
        peer = await self._peer(conversation)
        if peer is None:
            raise ProtocolError("not_found", "No such conversation.")
        await self.channel_layer.group_send(
            user_group(peer.other_user_id),
            {
                "type": EVENT,
                "kind": "typing",
                "conversation": conversation,
                "by": peer.role,
                "typing": typing,
            },
        )

    async def _peer(self, conversation: str) -> realtime.Peer | None:
        if conversation not in self.peers:  # opened since the hello?
            found = await in_db_thread(realtime.peers_of)(
                user=self.user, conversation_ids=[uuid.UUID(conversation)]
            )
            self.peers.update(found)
        return self.peers.get(conversation)

    # --- pushes -------------------------------------------------------------------------

    async def messaging_event(self, event: dict[str, Any]) -> None:
        if self.user is None or self.closed:
            return
        try:
            await self._event(event)
        except Exception as exc:  # noqa: BLE001 - one bad push must not end the socket
            logger.error("messaging socket: %s while pushing", type(exc).__name__)

    async def _event(self, event: dict[str, Any]) -> None:
        kind, conversation = event["kind"], event["conversation"]
        if kind == "message":
            seq = int(event["seq"])
            after = self.delivered.get(conversation)
            if after is None:  # a conversation opened since the hello: from this message on
                after = seq - 1
            if seq > after:
                await self._catch_up(conversation, after_seq=after, until=seq)
        elif kind == "changed":
            message = await in_db_thread(realtime.message_changed)(
                user=self.user, conversation_id=conversation, message_id=event["message"]
            )
            if message is None:
                await self._send(
                    {"type": "removed", "conversation": conversation, "id": event["message"]}
                )
            else:
                await self._send(
                    {"type": "changed", "conversation": conversation, "message": message}
                )
        elif kind == "receipt":
            await self._send(
                {
                    "type": "receipt",
                    "conversation": conversation,
                    "by": event["by"],
                    "seq": event["seq"],
                }
            )
        elif kind == "typing":
            await self._send(
                {
                    "type": "typing",
                    "conversation": conversation,
                    "by": event["by"],
                    "typing": event["typing"],
                }
            )

    async def _catch_up(self, conversation: str, *, after_seq: int, until: int | None) -> None:
        """Send the user's messages of ``conversation`` after ``after_seq``, in order."""
        messages = await in_db_thread(realtime.messages_deliver)(
            user=self.user, conversation_id=conversation, after_seq=after_seq
        )
        for message in messages:
            await self._send({"type": "message", "conversation": conversation, "message": message})
        last = messages[-1]["seq"] if messages else after_seq
        self.delivered[conversation] = max(last, until or 0, self.delivered.get(conversation, 0))

    # --- sending and closing ------------------------------------------------------------

    async def _send(self, frame: dict[str, Any]) -> None:
        if not self.closed:
            await frame_send(self, frame)

    async def _close(self, code: int) -> None:
        if self.closed:
            return
        self.closed = True
        if self.user is not None:
            await self.channel_layer.group_discard(user_group(self.user.pk), self.channel_name)
        with contextlib.suppress(Exception):
            await self.close(code=code)
