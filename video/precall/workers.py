"""Media workers: where echo peers run, behind one small interface (STYLE.md, point 12).

The web side asks ``get_worker().echo(request)`` for the answer to a user's offer and gets the
SDP, or ``MediaWorkerBusy`` (with the seconds after which a slot frees) or ``EchoRefused`` (the
offer cannot be answered). Two workers, chosen by ``VIDEO_PRECALL_MEDIA_WORKER``:

- ``InProcessMediaWorker`` (``inprocess``, the default, ``make run``): the echo peers run on
  the web process's own event loop, in its ``EchoPool``.
- ``ChannelLayerMediaWorker`` (``channels``): the request goes through the channel layer
  (Redis) to the ``manage.py run_media_worker`` processes, as many as needed, each with its
  own ``EchoPool``. A worker takes a request off the shared channel ``video.precall.offers``
  only while it has a free slot (``serve``), says ``taken`` at once and then sends the answer
  to the request's reply channel. A request no worker takes within
  ``VIDEO_PRECALL_QUEUE_SECONDS`` is answered busy, with the retry hint a full worker left in
  the cache (the soonest a slot of its frees); a worker drops requests past their deadline.

An ``EchoPool`` holds one process's running tests: at most ``VIDEO_PRECALL_MAX_TESTS`` at once
(beyond that ``MediaWorkerBusy`` with the seconds until its soonest test must have ended). When
a test ends it frees the slot, clears the user's running-test mark and records
``video.precall.finished`` (verdict, reason and figures; no address, no SDP).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache

from api.websocket import in_db_thread
from video.precall.echo import EchoLimits, EchoResult, EchoSession

logger = logging.getLogger("video.precall")

OFFERS_CHANNEL = "video.precall.offers"
RETRY_HINT_KEY = "video.precall.retry_at"
ANSWER_SECONDS = 10  # from a worker taking a request to its answer (ICE gathering included)
TAKEN_GRACE_SECONDS = 1.0  # for the "taken" of a request taken just before its deadline


class MediaWorkerBusy(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"busy, retry after {retry_after} s")
        self.retry_after = max(1, int(retry_after))


class EchoRefused(Exception):
    """The offer cannot be answered (aiortc refused it): ``code`` for the problem."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class EchoRequest:
    test_id: uuid.UUID
    user_id: uuid.UUID
    offer_sdp: str
    seconds: int
    deadline: float  # Unix time: a worker that takes the request later drops it

    def as_message(self) -> dict[str, Any]:
        return {
            "test": str(self.test_id),
            "user": str(self.user_id),
            "sdp": self.offer_sdp,
            "seconds": self.seconds,
            "deadline": self.deadline,
        }

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> EchoRequest:
        """``ValueError``/``KeyError``/``TypeError`` for a malformed message."""
        return cls(
            test_id=uuid.UUID(message["test"]),
            user_id=uuid.UUID(message["user"]),
            offer_sdp=str(message["sdp"]),
            seconds=int(message["seconds"]),
            deadline=float(message["deadline"]),
        )


class MediaWorker(Protocol):
    async def echo(self, request: EchoRequest) -> str:
        """The answer SDP of a new echo test; ``MediaWorkerBusy`` or ``EchoRefused``."""
        ...


def user_key(user_id: uuid.UUID | str) -> str:
    """The cache key marking a user's running test (one at a time per user)."""
    return f"video.precall.user.{user_id}"


def _record_finished(result: EchoResult, user_id: uuid.UUID) -> None:
    from api.models import User
    from video.precall.services import precall_finished

    user = User.objects.filter(pk=user_id).first()
    precall_finished(result=result, user=user)


class EchoPool:
    """One worker's running tests, at most ``capacity`` at once. ``clock``: monotonic seconds."""

    def __init__(
        self,
        *,
        capacity: int,
        limits: EchoLimits,
        record: Callable[[EchoResult, uuid.UUID], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.limits = limits
        self.clock = clock
        self.sessions: dict[uuid.UUID, EchoSession] = {}
        self.finished = 0
        self._record = record or in_db_thread(_record_finished)
        self._changed = asyncio.Event()

    @property
    def full(self) -> bool:
        return len(self.sessions) >= self.capacity

    def retry_after(self) -> int:
        """Seconds until the soonest running test must have ended (1 at least)."""
        if not self.sessions:
            return 1
        soonest = min(session.latest_end for session in self.sessions.values())
        return max(1, math.ceil(soonest - self.clock()))

    def admit(self, request: EchoRequest) -> EchoSession:
        """Take a slot for ``request`` (synchronously: no other admit can slip in between);
        ``MediaWorkerBusy`` when every slot is taken."""
        if self.full:
            raise MediaWorkerBusy(self.retry_after())

        async def finished(result: EchoResult) -> None:
            self.sessions.pop(request.test_id, None)
            self.finished += 1
            self._changed.set()
            try:
                await cache.adelete(user_key(request.user_id))
                await self._record(result, request.user_id)
            except Exception as exc:  # noqa: BLE001 - the slot is free whatever the recording does
                logger.error(
                    "precall %s: recording failed (%s)", request.test_id, type(exc).__name__
                )

        session = EchoSession(
            test_id=request.test_id,
            seconds=request.seconds,
            limits=self.limits,
            on_finished=finished,
            clock=self.clock,
        )
        self.sessions[request.test_id] = session
        return session

    async def answer(self, session: EchoSession, request: EchoRequest) -> str:
        """The session's answer; on ``EchoRefused`` its slot is free again."""
        try:
            return await session.answer(request.offer_sdp)
        except ValueError:
            self.sessions.pop(request.test_id, None)
            self._changed.set()
            raise EchoRefused("bad_sdp", "The offer cannot be answered.") from None

    async def start(self, request: EchoRequest) -> str:
        return await self.answer(self.admit(request), request)

    async def wait_for_slot(self) -> None:
        while self.full:
            self._changed.clear()
            await self._changed.wait()

    async def stop(self) -> None:
        """End every running test (each still reports and is recorded)."""
        await asyncio.gather(*(s.stop() for s in list(self.sessions.values())))


# --- In the web process ----------------------------------------------------------------------

_pool: EchoPool | None = None
_pool_loop: asyncio.AbstractEventLoop | None = None


def local_pool() -> EchoPool:
    """This process's pool, on the running event loop (made on first use)."""
    global _pool, _pool_loop
    loop = asyncio.get_running_loop()
    if _pool is None or _pool_loop is not loop:
        _pool = EchoPool(
            capacity=settings.VIDEO_PRECALL_MAX_TESTS, limits=EchoLimits.from_settings()
        )
        _pool_loop = loop
    return _pool


class InProcessMediaWorker:
    async def echo(self, request: EchoRequest) -> str:
        return await local_pool().start(request)


# --- Through the channel layer ---------------------------------------------------------------


async def _retry_hint() -> int:
    hint = await cache.aget(RETRY_HINT_KEY)
    if isinstance(hint, int | float) and hint > time.time():
        return math.ceil(hint - time.time())
    return settings.VIDEO_PRECALL_SECONDS  # no worker full just now: none may be running


class ChannelLayerMediaWorker:
    async def echo(self, request: EchoRequest) -> str:
        layer = get_channel_layer()
        assert layer is not None
        # A plain channel of its own (not a process-specific one from ``new_channel``): each
        # offer waits on its own key, with no receive loop shared between the offers.
        reply = f"video.precall.reply.{request.test_id}"
        await layer.send(
            OFFERS_CHANNEL, {"type": "precall.offer", "reply_to": reply, **request.as_message()}
        )
        wait = max(0.0, request.deadline - time.time()) + TAKEN_GRACE_SECONDS
        try:
            message = await asyncio.wait_for(layer.receive(reply), wait)
            if message.get("type") == "precall.taken":
                message = await asyncio.wait_for(layer.receive(reply), ANSWER_SECONDS)
        except TimeoutError:
            raise MediaWorkerBusy(await _retry_hint()) from None
        kind = message.get("type")
        if kind == "precall.answer":
            return str(message["sdp"])
        if kind == "precall.busy":
            raise MediaWorkerBusy(int(message.get("retry_after", 1)))
        raise EchoRefused(str(message.get("code", "bad_sdp")), str(message.get("detail", "")))


async def serve(pool: EchoPool, *, stop: asyncio.Event) -> None:
    """``run_media_worker``'s loop: take requests while a slot is free, answer each."""
    layer = get_channel_layer()
    assert layer is not None
    answering: set[asyncio.Task[None]] = set()
    while not stop.is_set():
        await pool.wait_for_slot()
        message = await layer.receive(OFFERS_CHANNEL)
        try:
            reply = str(message["reply_to"])
            request = EchoRequest.from_message(message)
        except (KeyError, TypeError, ValueError):
            logger.warning("precall: a malformed request was dropped")
            continue
        if request.deadline < time.time():
            logger.info("precall %s: dropped, taken after its deadline", request.test_id)
            continue
        await layer.send(reply, {"type": "precall.taken"})
        session = pool.admit(request)  # a slot is free: wait_for_slot returned, nothing since
        if pool.full:
            await cache.aset(RETRY_HINT_KEY, time.time() + pool.retry_after(), timeout=60)
        task = asyncio.create_task(_answer(pool, session, request, reply))
        answering.add(task)
        task.add_done_callback(answering.discard)


async def _answer(pool: EchoPool, session: EchoSession, request: EchoRequest, reply: str) -> None:
    layer = get_channel_layer()
    assert layer is not None
    try:
        sdp = await pool.answer(session, request)
    except EchoRefused as refused:
        await layer.send(
            reply, {"type": "precall.refused", "code": refused.code, "detail": refused.detail}
        )
        return
    await layer.send(reply, {"type": "precall.answer", "sdp": sdp})


def get_worker() -> MediaWorker:
    """The worker the settings name (read at each call, so tests may override them)."""
    if settings.VIDEO_PRECALL_MEDIA_WORKER == "channels":
        return ChannelLayerMediaWorker()
    return InProcessMediaWorker()


__all__ = [
    "ChannelLayerMediaWorker",
    "EchoPool",
    "EchoRefused",
    "EchoRequest",
    "InProcessMediaWorker",
    "MediaWorker",
    "MediaWorkerBusy",
    "get_worker",
    "serve",
]
