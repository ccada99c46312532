"""Lost web processes: each one's heartbeat, and the sweep that detaches the participants of a
process that stopped beating (docs/video.md, "Lost web processes").

A web process that dies without closing its sockets (killed, out of memory, its host lost)
runs no ``disconnect``: its participants would stay attached, their attendance intervals open,
until they came back or the room ended. So every process that serves video sockets beats:
from its first ``hello`` on, it writes its ``WebProcess`` row's ``beat_at`` every
``VIDEO_PROCESS_BEAT_SECONDS``, and each participant row names the process serving its socket.
``video_lost_processes`` (a job every minute) takes a process whose beat is older than
``VIDEO_PROCESS_DEAD_SECONDS`` for dead and detaches each of its participants as the socket's
close would have (``video.signalling.participant_detach_lost``, under the room's lock): their
intervals close at the process's last beat, so an outage is never counted as attended time (at
most one beat interval of real attendance is lost); the others in the call, on live
processes, are told ``peer-left`` through the channel layer; the place is kept for a resume.

The heartbeat is a row in the database, not a Redis key with a TTL: the sweep reads it inside
the participant's transaction, under the room's lock, so a process that beat again since it
was found silent is left alone; and it works the same on one box (SQLite, in-memory layer).
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from api.websocket import in_db_thread
from video.fanout import effects_send
from video.models import Participant, WebProcess
from video.signalling import participant_detach_lost

__all__ = ["FORGET_AFTER", "Heartbeat", "heartbeat", "lost_processes_sweep", "process_beat"]

logger = logging.getLogger("video.liveness")


def process_beat(*, process_id: uuid.UUID, now: datetime) -> None:
    """The process ``process_id`` is alive at ``now`` (its row made at its first beat, or
    again if a sweep removed it while the process was stalled)."""
    if not WebProcess.objects.filter(pk=process_id).update(beat_at=now):
        WebProcess.objects.get_or_create(
            pk=process_id, defaults={"started_at": now, "beat_at": now}
        )


class Heartbeat:
    """This process's heartbeat: started by the first socket that needs it, then beating on
    that event loop every ``VIDEO_PROCESS_BEAT_SECONDS`` (``sleep``: a test moves it). The id
    is the process's own: a worker forked from a server that imported the app makes its own."""

    sleep: Callable[[float], Awaitable[None]] = staticmethod(asyncio.sleep)

    def __init__(self) -> None:
        self._begin()

    def _begin(self) -> None:
        """A new process: a new id, not beating yet."""
        self._pid = os.getpid()
        self.id = uuid.uuid4()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None

    async def process_id(self) -> uuid.UUID:
        """This process's id, once its row exists (the participant row refers to it)."""
        if self._pid != os.getpid():
            self._begin()
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop, self._first = loop, loop.create_future()
            self._task = loop.create_task(self._beat(self._first))
        assert self._first is not None
        await asyncio.shield(self._first)
        return self.id

    async def _beat(self, first: asyncio.Future[None]) -> None:
        while True:
            try:
                await in_db_thread(process_beat)(process_id=self.id, now=timezone.now())
            except Exception as exc:  # noqa: BLE001 - a beat lost is logged, the next one tries
                if not first.done():  # the first socket's hello fails; the next one retries
                    first.set_exception(exc)
                    return
                logger.error("video liveness: %s while beating", type(exc).__name__)
            else:
                if not first.done():
                    first.set_result(None)
            await type(self).sleep(settings.VIDEO_PROCESS_BEAT_SECONDS)


heartbeat = Heartbeat()


# A lost process's row goes once nobody is on it and it has been silent this long: long past
# any stall, so a process taken for lost that was only slow (or one configured with a longer
# beat than the sweep's limit) finds its row still there, and its sockets' hellos, which name
# it, never fail for want of it.
FORGET_AFTER = timedelta(days=1)


def lost_processes_sweep(*, now: datetime) -> int:
    """Detach every participant whose socket's process has not beaten for
    ``VIDEO_PROCESS_DEAD_SECONDS`` at ``now``, each in its own transaction, and tell the others
    after its commit; then remove the rows of processes silent for ``FORGET_AFTER`` that nobody
    is on any more. Returns how many were detached: a second run finds none."""
    dead_before = now - timedelta(seconds=settings.VIDEO_PROCESS_DEAD_SECONDS)
    held = list(
        Participant.objects.filter(process__beat_at__lt=dead_before)
        .exclude(channel_name="")
        .order_by("pk")
        .values_list("pk", "process_id")
    )
    detached = 0
    layer = get_channel_layer()
    for participant_id, process_id in held:
        effects = participant_detach_lost(
            participant_id=participant_id, process_id=process_id, dead_before=dead_before, now=now
        )
        if effects is None:
            continue
        detached += 1
        async_to_sync(effects_send)(layer, effects)
    forget_before = now - FORGET_AFTER
    WebProcess.objects.filter(beat_at__lt=forget_before, participants__isnull=True).delete()
    return detached
