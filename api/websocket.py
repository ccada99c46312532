"""Which pages may open the API's WebSockets.

A browser sends the page's ``Origin``: it must be this API's own host (``ALLOWED_HOSTS``) or a
web app's origin (``CORS_ALLOWED_ORIGINS``, or in development one matching
``CORS_ALLOWED_ORIGIN_REGEXES``), as for REST calls from a browser. A native app
(iOS, Android, the Python client) sends no ``Origin`` and is let through: a socket's authority
is the room token in its first message, never a cookie, so another site's page gains nothing by
opening one, and refusing a missing header would shut out every mobile app.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import ParseResult

from channels.security.websocket import OriginValidator
from django.conf import settings

_DEBUG_HOSTS = ["localhost", "127.0.0.1", "[::1]"]


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
