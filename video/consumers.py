"""The signalling socket, ``/ws/video/<room_id>/`` (docs/video.md, "Signalling").

One ``VideoSignalConsumer`` per socket. Every frame is checked first (``video.protocol``: size,
rate, shape); the first message must be a valid ``hello`` (or the token comes in
``Sec-WebSocket-Protocol``), never from the URL. What a message changes is decided in
``video.signalling`` under the room's row lock; this class only carries out the effects it
returns: a message to one participant's socket (``channel_layer.send`` to its channel), to the
room's group, or a nudge to waiting clients in the therapist's other rooms. A consumer forwards
only what is addressed to its participant. It never crashes on input: an unexpected error
becomes an ``error`` (``internal_error``) and a log line without the payload. A send to a
client that has gone fails quietly (``api.websocket.frame_send``): the socket lives on to handle
what that client sent before it went (a ``leave``) and then its disconnect. No SDP, candidate,
address or note text is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from api.websocket import frame_send, in_db_thread
from video import liveness, quality, signalling
from video.fanout import RELAY, effects_send
from video.negotiation import RELAYED, Negotiation
from video.protocol import (
    SUBPROTOCOL,
    TOKEN_SUBPROTOCOL_PREFIX,
    Close,
    Message,
    ProtocolError,
    RateLimiter,
    Verdict,
    error_message,
    frame_size_ok,
    message_parse,
    server_message,
)
from video.sdp import SdpError, sdp_check
from video.signalling import Attached, AttachRefused, Effect, Send, SignalRefused

logger = logging.getLogger("video.signalling")


class VideoSignalConsumer(AsyncWebsocketConsumer):
    """One signalling socket. ``clock`` (monotonic seconds) drives the rate limiter;
    ``wait_until_window_end`` sleeps until the room's window closes (a test moves the clock)."""

    clock: Callable[[], float] = staticmethod(time.monotonic)
    wait_until_window_end: Callable[[float], Awaitable[None]] = staticmethod(asyncio.sleep)

    async def connect(self) -> None:
        self.room_id: uuid.UUID = self.scope["url_route"]["kwargs"]["room_id"]
        self.attached: Attached | None = None
        self.negotiation: Negotiation | None = None
        self.last_stats = float("-inf")
        self.closed = False
        self.groups_joined: list[str] = []
        self.timers: list[asyncio.Task[None]] = []
        self.limiter = RateLimiter(clock=type(self).clock)
        offered = [p for p in self.scope.get("subprotocols", []) if isinstance(p, str)]
        header_token = next(
            (
                p[len(TOKEN_SUBPROTOCOL_PREFIX) :]
                for p in offered
                if p.startswith(TOKEN_SUBPROTOCOL_PREFIX)
            ),
            None,
        )
        await self.accept(SUBPROTOCOL if SUBPROTOCOL in offered else None)
        if header_token is not None:
            await self._guarded("hello", self._hello(header_token, None))
        else:
            self.timers.append(asyncio.create_task(self._hello_timeout()))

    async def disconnect(self, code: int) -> None:
        self.closed = True
        await self._detach()

    # --- incoming frames ----------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closed:
            return
        await self._guarded(None, self._receive(text_data, bytes_data))

    async def _guarded(self, kind: str | None, work: Any) -> None:
        try:
            await work
        except Exception as exc:  # noqa: BLE001 - never crash on input; the payload is not logged
            logger.error(
                "video signalling: %s while handling %s", type(exc).__name__, kind or "a frame"
            )
            if not self.closed:
                await self._send(
                    error_message(ProtocolError("internal_error", "Something went wrong.", kind))
                )

    async def _receive(self, text: str | None, data: bytes | None) -> None:
        if not frame_size_ok(text, data):
            await self._close(Close.TOO_LARGE)
            return
        verdict = self.limiter.check()
        if verdict is Verdict.FLOODING:
            await self._close(Close.FLOODING)
            return
        if verdict is Verdict.LIMITED:
            await self._send(
                error_message(ProtocolError("rate_limited", "Too many messages: slow down."))
            )
            return
        try:
            message = message_parse(text, data)
        except ProtocolError as error:
            if self.attached is None:
                await self._close(Close.BAD_HELLO)
            else:
                await self._send(error_message(error))
            return
        if self.attached is None:
            if message.type != "hello":
                await self._close(Close.BAD_HELLO)
                return
            fields = message.fields
            await self._hello(
                fields["token"], fields.get("resume"), fields.get("ice_restart", False)
            )
            return
        try:
            await self._dispatch(self.attached, message)
        except (SignalRefused, SdpError) as refused:
            await self._send(
                error_message(ProtocolError(refused.code, refused.detail, message.type))
            )

    # --- hello --------------------------------------------------------------------------

    async def _hello(self, token: str, resume: str | None, ice_restart: bool = False) -> None:
        group = signalling.room_group(self.room_id)
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined.append(group)
        try:
            attached, _ = await in_db_thread(signalling.participant_attach)(
                room_id=self.room_id,
                token=token,
                resume=resume,
                channel_name=self.channel_name,
                process_id=await liveness.heartbeat.process_id(),
                now=timezone.now(),
                ice_restart=ice_restart,
            )
        except AttachRefused as refused:
            logger.info("video signalling: hello refused (%s)", int(refused.code))
            await self._close(refused.code)
            return
        self.attached = attached
        self.negotiation = Negotiation(role=attached.role)
        for timer in self.timers:
            timer.cancel()
        self.timers = [asyncio.create_task(self._window_timer(attached))]
        if attached.role != signalling.THERAPIST:
            therapist = signalling.therapist_group(attached.therapist_user_id)
            await self.channel_layer.group_add(therapist, self.channel_name)
            self.groups_joined.append(therapist)
        await self._apply(attached.effects)

    async def _hello_timeout(self) -> None:
        await asyncio.sleep(settings.VIDEO_HELLO_TIMEOUT_SECONDS)
        if self.attached is None and not self.closed:
            await self._close(Close.UNAUTHENTICATED)

    async def _window_timer(self, attached: Attached) -> None:
        delay = (attached.closes_at - timezone.now()).total_seconds()
        await type(self).wait_until_window_end(max(0.0, delay))
        if self.closed:
            return
        effects = await in_db_thread(signalling.room_window_close)(
            room_id=attached.room_id, now=timezone.now()
        )
        await self._apply(effects)

    # --- messages of an attached socket -------------------------------------------------

    async def _dispatch(self, me: Attached, message: Message) -> None:
        kind, fields = message.type, message.fields
        common = {"participant_id": me.participant_id, "channel_name": self.channel_name}
        now = timezone.now()
        call: Callable[..., list[Effect]]
        if kind == "hello":
            raise SignalRefused("forbidden", "Already said hello.")
        if kind in RELAYED:
            await self._relay(me, kind, fields)
            return
        if kind == "stats":
            await self._stats(me, fields)
            return
        extra: dict[str, Any] = {}
        if kind in ("admit", "deny"):
            call = signalling.participant_admit if kind == "admit" else signalling.participant_deny
            extra = {"target_id": uuid.UUID(fields["participant"])}
        elif kind == "note":
            call, extra = signalling.participant_note, {"text": fields["text"]}
        elif kind == "notes":
            call, extra = signalling.room_notes_set, {"allow": fields["allow"]}
        elif kind == "restart":
            call, extra = signalling.room_restart, dict(fields)
        elif kind == "media":
            call, extra = signalling.participant_media, dict(fields)
        elif kind == "mode":
            call, extra = signalling.room_mode_set, {"mode": fields["mode"]}
        elif kind == "leave":
            call = signalling.participant_leave
        elif kind == "end":
            call = signalling.room_end
        elif kind == "connection":
            call, extra = signalling.participant_connection, {"state": fields["state"]}
        else:  # pragma: no cover - message_parse knows no other type
            raise SignalRefused("unknown_type", "Unknown message type.")
        effects = await in_db_thread(call)(**common, **extra, now=now)
        await self._apply(effects)

    async def _relay(self, me: Attached, kind: str, fields: dict[str, Any]) -> None:
        """An offer, answer, candidate or share, checked against what this socket was told of
        the round (``video.negotiation``) and the SDP checked, to the room's group: the sockets
        of the sender's peers in the round forward it (``video_relay``)."""
        assert self.negotiation is not None
        self.negotiation.check_outgoing(kind, fields["round"])
        if kind in ("offer", "answer"):
            sdp_check(fields["sdp"])
        sender = str(me.participant_id)
        await self.channel_layer.group_send(
            signalling.room_group(me.room_id),
            {
                "type": RELAY,
                "round": fields["round"],
                "from": sender,
                "to_therapist": me.role != signalling.THERAPIST,
                "message": server_message(kind, **fields, **{"from": sender}),
            },
        )

    async def _stats(self, me: Attached, fields: dict[str, Any]) -> None:
        """A call-quality report (``video.quality``): from a socket in the call, at most one per
        ``VIDEO_STATS_MIN_SECONDS``; stored with the server's time."""
        assert self.negotiation is not None
        if self.negotiation.round is None:
            raise SignalRefused("not_admitted", "Wait to be admitted.")
        now = type(self).clock()
        if now - self.last_stats < settings.VIDEO_STATS_MIN_SECONDS:
            raise SignalRefused("rate_limited", "Stats come at most every few seconds.")
        self.last_stats = now
        await in_db_thread(quality.quality_sample_record)(
            participant_id=me.participant_id, stats=quality.Stats(**fields), now=timezone.now()
        )

    # --- effects and channel-layer events -----------------------------------------------

    async def _apply(self, effects: list[Effect]) -> None:
        # Others first: this socket's own effect may close it, and its client may have gone
        # already (a `leave` followed at once by a close), which must not cost the others
        # their `peer-left`.
        mine = [e for e in effects if isinstance(e, Send) and e.channel == self.channel_name]
        await effects_send(
            self.channel_layer, [e for e in effects if not any(e is m for m in mine)]
        )
        for effect in mine:
            await self._deliver(effect.participant, effect.message, effect.close)

    async def _deliver(
        self, participant: str | None, message: dict[str, Any] | None, close: int | None
    ) -> None:
        """Forward what is addressed to this socket's participant (``None``: everyone in the
        room that said hello)."""
        if self.closed:
            return
        me = self.attached
        if me is None or (participant is not None and str(me.participant_id) != participant):
            return
        if message is not None:
            if self.negotiation is not None:
                self.negotiation.told(message)
            await self._send(message)
        if close is not None:
            if close in (Close.REPLACED, Close.FORBIDDEN, Close.ENDED):
                self.attached = None  # the server has given the place away already
            await self._close(close)

    async def video_deliver(self, event: dict[str, Any]) -> None:
        await self._guarded(
            "delivery", self._deliver(event["participant"], event["message"], event["close"])
        )

    async def video_relay(self, event: dict[str, Any]) -> None:
        await self._guarded("relay", self._relayed(event))

    async def _relayed(self, event: dict[str, Any]) -> None:
        negotiation = self.negotiation
        if self.closed or self.attached is None or negotiation is None:
            return
        if negotiation.accepts(
            round_=event["round"], sender=event["from"], to_therapist=event["to_therapist"]
        ):
            await self._send(event["message"])

    async def video_therapist(self, event: dict[str, Any]) -> None:
        await self._guarded("delivery", self._therapist_changed(event))

    async def _therapist_changed(self, event: dict[str, Any]) -> None:
        me = self.attached
        if me is None or me.role == signalling.THERAPIST or self.closed:
            return
        if event.get("room") == str(me.room_id):
            return  # this room's clients were told with the change
        effects = await in_db_thread(signalling.waiting_status)(
            participant_id=me.participant_id, channel_name=self.channel_name
        )
        await self._apply(effects)

    # --- sending and closing ------------------------------------------------------------

    async def _send(self, message: dict[str, Any]) -> None:
        if not self.closed:
            await frame_send(self, message)

    async def _close(self, code: int) -> None:
        if self.closed:
            return
        self.closed = True
        await self._detach()
        with contextlib.suppress(Exception):  # the client may have closed first: nothing to do
            await self.close(code=int(code))

    async def _detach(self) -> None:
        current = asyncio.current_task()
        for timer in self.timers:
            if timer is not current:
                timer.cancel()
        self.timers = []
        me, self.attached, self.negotiation = self.attached, None, None
        if me is not None:
            with contextlib.suppress(Exception):
                effects = await in_db_thread(signalling.participant_detach)(
                    participant_id=me.participant_id,
                    channel_name=self.channel_name,
                    now=timezone.now(),
                )
                await self._apply(effects)
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined = []
