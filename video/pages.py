"""The reference video page (``/video/{booking_id}/``, docs/video.md "Reference page").

A static page: it holds no data and needs no sign-in. Everything it can do comes from the
access token the user gives it, which the JavaScript sends to the REST join as a Bearer token
(never in a URL). The booking id, an opaque UUID, is only in the path. The page's scripts and
style are served by :func:`asset` (so the page works under uvicorn with or without DEBUG, with
no proxy and no ``collectstatic``); the same files are in ``video/static/video/`` for a proxy.

The page is sent with a strict Content-Security-Policy: no inline script or style, scripts only
from this origin, sockets only to this host, no framing.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

_STATIC = Path(__file__).resolve().parent / "static" / "video"
# The only files :func:`asset` serves, with their media types.
ASSETS = {
    "room.js": "text/javascript; charset=utf-8",
    "precall.js": "text/javascript; charset=utf-8",
    "room.css": "text/css; charset=utf-8",
}


def _csp(request: HttpRequest) -> str:
    host = request.get_host()
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "media-src 'self' blob: mediastream:",
            # The REST join (same origin) and the signalling socket (ws_url: this host).
            f"connect-src 'self' ws://{host} wss://{host}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


@require_GET
def room(request: HttpRequest, booking_id: uuid.UUID) -> HttpResponse:
    """The call page for one booking: HTML only; the script does the rest."""
    response = render(request, "video/room.html", {"booking_id": booking_id})
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    response["Content-Security-Policy"] = _csp(request)
    response["Permissions-Policy"] = "camera=(self), microphone=(self), geolocation=()"
    return response


@require_GET
def asset(request: HttpRequest, name: str) -> FileResponse:
    """The page's script or style sheet (an allow-list: no path from the URL reaches the disk)."""
    content_type = ASSETS.get(name)
    if content_type is None:
        raise Http404("no such asset")
    response = FileResponse((_STATIC / name).open("rb"), content_type=content_type)
    response["Cache-Control"] = "no-cache"
    return response
