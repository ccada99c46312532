"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from api.errors import PROBLEM_CONTENT_TYPE, problem_body


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving (no dependency checked)."""
    return JsonResponse({"status": "ok"})


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        return False


def _channel_layer_ok() -> bool:
    layer = get_channel_layer()
    if layer is None:
        return False
    channel = f"readyz.{uuid.uuid4().hex}"
    try:
        async_to_sync(layer.send)(channel, {"type": "readyz.ping"})
        message = async_to_sync(layer.receive)(channel)
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        return False
    return message.get("type") == "readyz.ping"


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """The database and the channel layer answer: this process can take traffic."""
    checks = {"database": _database_ok(), "channel_layer": _channel_layer_ok()}
    if all(checks.values()):
        return JsonResponse({"status": "ok", "checks": checks})
    body = problem_body(
        status_code=503,
        code="not_ready",
        detail="A dependency is not reachable.",
        request=request,
        checks=checks,
    )
    return JsonResponse(body, status=503, content_type=PROBLEM_CONTENT_TYPE)
