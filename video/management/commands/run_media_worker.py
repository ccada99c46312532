"""``manage.py run_media_worker``: a media worker process for the pre-call test.

Takes pre-call offers from the channel layer (``VIDEO_PRECALL_MEDIA_WORKER=channels``, Redis)
while it has a free slot and runs their echo peers (video/precall/workers.py); run as many as
the load needs, on any machine that reaches Redis, the database and the users (UDP). SIGTERM or
SIGINT: stop taking offers, end the running tests (each reports and is recorded), exit. If the
channel layer fails, it ends its tests the same way and exits non-zero (to be restarted).
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from video.precall.echo import EchoLimits
from video.precall.workers import EchoPool, serve


class Command(BaseCommand):
    help = "Run pre-call echo tests taken from the channel layer (a media worker)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--max-tests",
            type=int,
            default=None,
            help="Tests at once in this worker (default VIDEO_PRECALL_MAX_TESTS).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.VIDEO_PRECALL_MEDIA_WORKER != "channels":
            raise CommandError("Set VIDEO_PRECALL_MEDIA_WORKER=channels (and REDIS_URL).")
        capacity = options["max_tests"] or settings.VIDEO_PRECALL_MAX_TESTS
        asyncio.run(self._run(capacity))

    async def _run(self, capacity: int) -> None:
        pool = EchoPool(capacity=capacity, limits=EchoLimits.from_settings())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        self.stdout.write(f"media worker: up to {capacity} pre-call tests at once")
        self.stdout.flush()
        serving = asyncio.create_task(serve(pool, stop=stop))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        serving.cancel()
        failure: BaseException | None = None
        try:
            await serving
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # noqa: BLE001 - reported below, after the tests are ended
            failure = exc
        await pool.stop()
        if failure is not None:  # the channel layer failed: exit non-zero, to be restarted
            raise CommandError(f"media worker: {type(failure).__name__}") from failure
        self.stdout.write(f"media worker: stopped after {pool.finished} tests")
