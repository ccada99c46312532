"""What the API's WebSockets share: which pages may open them, how a consumer reaches the
database (``in_db_thread``), and how it sends a frame to a client that may have gone
(``frame_send``).

Which pages may open them:
A browser sends the page's ``Origin``: it must be this API's own host (``ALLOWED_HOSTS``) or a
web app's origin (``CORS_ALLOWED_ORIGINS``, or in development one matching
``CORS_ALLOWED_ORIGIN_REGEXES``), as for REST calls from a browser. A native app
(iOS, Android, the Python client) sends no ``Origin`` and is let through: a socket's authority
is the room token in its first message, never a cookie, so another site's page gains nothing by
opening one, and refusing a missing header would shut out every mobile app.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import ParseResult

from channels.db import DatabaseSyncToAsync
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.db import connection

_DEBUG_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
T = TypeVar("T")


def in_db_thread(func: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """``func`` run in the thread pool, its connections closed as Channels does.

    Not Channels' default (``thread_sensitive``): that runs every socket's database work of a
    process on one thread, one call after another, so a burst of rooms queues behind itself
    (bench/bench_video.py). A socket's own calls still run one at a time: it awaits each.
    SQLite takes one writer at a time, and its shared in-memory database (the test suite's)
    refuses a second at once ("database table is locked"): there every call runs on the one
    thread, as Channels' default does.
    """
    return DatabaseSyncToAsync(func, thread_sensitive=connection.vendor == "sqlite")


async def frame_send(consumer: AsyncWebsocketConsumer, frame: dict[str, Any]) -> bool:
    """Send ``frame`` as compact JSON; False if the client has gone.

    An ASGI server raises an ``OSError`` for a send on a closed connection (uvicorn's
    ``ClientDisconnected``). That is no fault of the socket's, and it must not end the consumer:
    what the client sent before closing, and then its disconnect, are still queued behind the
    send, and they must be handled (a ``leave`` sent just before closing the page is a leave,
    and the disconnect is what frees the client's place).
    """
    try:
        await consumer.send(text_data=json.dumps(frame, separators=(",", ":")))
    except OSError:
        return False
    return True


class SocketOriginValidator(OriginValidator):
    def __init__(self, application: Any):
        super().__init__(application, allowed_origins=[])

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        if parsed_origin is None:
            return True
        origin = f"{parsed_origin.scheme}://{parsed_origin.netloc}"
        if any(re.match(rx, origin) for rx in settings.CORS_ALLOWED_ORIGIN_REGEXES):
            return True
        hosts = list(settings.ALLOWED_HOSTS) or (_DEBUG_HOSTS if settings.DEBUG else [])
        self.allowed_origins = [*hosts, *settings.CORS_ALLOWED_ORIGINS]
        return bool(self.validate_origin(parsed_origin))
