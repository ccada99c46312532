"""Prometheus metrics without PHI: what ``/metrics`` exposes and how it is counted.

- HTTP: requests and latency by route *pattern* (``api/v1/bookings/<uuid:booking_id>``, from
  the resolver), method and status class; never the raw path, which holds ids. 5xx answers are
  counted apart as errors. An unresolved path is ``<unmatched>``.
- WebSocket connections open (``track_websockets`` wraps the socket application in
  ``api/asgi.py``).
- Scrape-time gauges (``DatabaseCollector``), each one cheap indexed query: outbox depth, audit
  events not sealed yet and the age of the oldest (seal lag), video rooms open, and each
  periodic job's runs, failures and last success (``api.models.JobRun``).

Labels are fixed sets (method, status class) or the URLconf's own patterns, so no label can hold
an id, email or name and the number of series is bounded.

Several uvicorn workers: with ``PROMETHEUS_MULTIPROC_DIR`` set (an empty directory, wiped before
the workers start), every process writes its samples there and a scrape of any worker sums them
(prometheus-client's multiprocess mode). The variable must be in the environment before this
module is imported.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, Max, Min
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY

access_log = logging.getLogger("api.access")

UNMATCHED = "<unmatched>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS = Counter(
    "telehealth_http_requests_total",
    "HTTP requests answered, by route pattern, method and status class.",
    ["route", "method", "status"],
)
HTTP_ERRORS = Counter(
    "telehealth_http_server_errors_total",
    "HTTP requests answered with a 5xx status, by route pattern and method.",
    ["route", "method"],
)
HTTP_LATENCY = Histogram(
    "telehealth_http_request_duration_seconds",
    "Time from the first middleware to the response, by route pattern and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
WEBSOCKETS_OPEN = Gauge(
    "telehealth_websocket_connections_open",
    "WebSocket connections accepted and not closed yet.",
    multiprocess_mode="livesum",
)


def route_of(request: HttpRequest) -> str:
    """The matched URL pattern (never the path itself), or ``<unmatched>``."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return UNMATCHED
    return match.route or match.view_name or UNMATCHED


def method_of(request: HttpRequest) -> str:
    method = (request.method or "").upper()
    return method if method in _METHODS else "OTHER"


def observe(route: str, method: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(route, method, f"{status // 100}xx").inc()
    HTTP_LATENCY.labels(route, method).observe(seconds)
    if status >= 500:
        HTTP_ERRORS.labels(route, method).inc()


# --- WebSocket connections ----------------------------------------------------------------------

_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def track_websockets(application: Any) -> Callable[[_Scope, _Receive, _Send], Awaitable[None]]:
    """ASGI wrapper: counts a socket open from its accept until its application returns."""

    async def app(scope: _Scope, receive: _Receive, send: _Send) -> None:
        accepted = False

        async def counting_send(message: MutableMapping[str, Any]) -> None:
            nonlocal accepted
            await send(message)
            if message.get("type") == "websocket.accept" and not accepted:
                accepted = True
                WEBSOCKETS_OPEN.inc()

        try:
            await application(scope, receive, counting_send)
        finally:
            if accepted:
                WEBSOCKETS_OPEN.dec()

    return app


# --- Scrape-time gauges from the database -------------------------------------------------------


def _unsealed() -> tuple[int, Any]:
    """(events not sealed yet, the oldest one's ``occurred_at``), as the sealer finds them
    (``audit.chain._pending_events``): the events above the highest sealed id, and on
    PostgreSQL those below it whose transactions committed late (from the last horizon on)."""
    from audit.models import AuditEvent, AuditSeal

    highest = AuditSeal.objects.aggregate(highest=Max("event_id"))["highest"] or 0
    fresh = AuditEvent.objects.filter(id__gt=highest).aggregate(
        n=Count("id"), oldest=Min("occurred_at")
    )
    count, oldest = fresh["n"], fresh["oldest"]
    if connection.vendor == "postgresql" and highest:
        horizon = AuditSeal.objects.order_by("-seq").values_list("horizon", flat=True).first()
        late = AuditEvent.objects.filter(id__lte=highest, seal__isnull=True, txid__gte=horizon or 0)
        stragglers = late.aggregate(n=Count("id"), oldest=Min("occurred_at"))
        if stragglers["n"]:
            count += stragglers["n"]
            oldest = min(filter(None, (oldest, stragglers["oldest"])))
    return count, oldest


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _job_metrics() -> Iterable[Metric]:
    """Each periodic job's runs and failures (``api.models.JobRun``: one row per job, its
    counters kept by the task wrapper) and when it last succeeded; labelled by job name."""
    from api.models import JobRun

    runs = CounterMetricFamily("telehealth_job_runs", "Runs of each job.", labels=["job"])
    failures = CounterMetricFamily(
        "telehealth_job_failures", "Failed runs of each job.", labels=["job"]
    )
    success = GaugeMetricFamily(
        "telehealth_job_last_success_timestamp_seconds",
        "When each job last succeeded (Unix time; absent before its first success).",
        labels=["job"],
    )
    for name, count, failed, succeeded in JobRun.objects.values_list(
        "name", "runs", "failures", "last_success_at"
    ):
        runs.add_metric([name], count)
        failures.add_metric([name], failed)
        if succeeded is not None:
            success.add_metric([name], succeeded.timestamp())
    yield from (runs, failures, success)


class DatabaseCollector:
    """Gauges read from the database at each scrape (in the scraping process only)."""

    def collect(self) -> Iterable[Metric]:
        from api.models import OutboundEmail
        from audit.db import db_now
        from scheduling.models import BookingNotification
        from video.models import Room

        outbox = GaugeMetricFamily(
            "telehealth_outbox_pending",
            "Outbox rows still to send, by outbox.",
            labels=["outbox"],
        )
        outbox.add_metric(["email"], OutboundEmail.objects.count())
        outbox.add_metric(
            ["booking_notification"],
            BookingNotification.objects.filter(sent_at__isnull=True).count(),
        )
        yield outbox

        unsealed, oldest = _unsealed()
        lag = max((db_now(connection) - oldest).total_seconds(), 0.0) if oldest else 0.0
        yield _gauge(
            "telehealth_audit_unsealed_events",
            "Audit events not sealed into the chain yet.",
            unsealed,
        )
        yield _gauge(
            "telehealth_audit_seal_lag_seconds",
            "Age of the oldest audit event not sealed yet (0 when all are sealed).",
            lag,
        )
        yield from _job_metrics()
        yield _gauge(
            "telehealth_video_rooms_active",
            "Video rooms opened and not ended.",
            Room.objects.filter(ended_at__isnull=True).count(),
        )


class _Scrape:
    """What one scrape exposes: the process (or all workers') metrics and the gauges."""

    def __init__(self, *collectors: Any):
        self.collectors = collectors

    def collect(self) -> Iterable[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


_LIVE_FILE = re.compile(r"^gauge_live\w+?_(\d+)\.db$")


def _forget_dead_workers(directory: str) -> None:
    """Drop the live gauges of worker processes that are gone (uvicorn restarts a dead worker
    under a new pid; its last value must not count forever)."""
    for name in os.listdir(directory):
        found = _LIVE_FILE.match(name)
        if found is None:
            continue
        pid = int(found.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, directory)
        except PermissionError:  # alive, another user's
            pass


def process_metrics() -> Any:
    """This process's metrics or, in multiprocess mode, every worker's, summed."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return REGISTRY
    _forget_dead_workers(directory)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, directory)
    return registry


def scrape() -> tuple[bytes, str]:
    """(body, content type) of one scrape, in Prometheus' text format."""
    encoder, content_type = choose_encoder("text/plain")
    return encoder(_Scrape(process_metrics(), DatabaseCollector())), content_type


# --- The endpoint -------------------------------------------------------------------------------

_BEARER = re.compile(r"^Bearer ([^\s]+)$")


def _loopback(request: HttpRequest) -> bool:
    if "HTTP_X_FORWARDED_FOR" in request.META:  # came through a proxy: not this machine's own
        return False
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: with ``METRICS_TOKEN`` set, only for ``Authorization: Bearer <token>``
    (401 otherwise); without it, a 404 in production and, in development, open to loopback
    only. Not an API operation (not in openapi.yaml) and reads no protected data: not audited."""
    token = settings.METRICS_TOKEN
    if token:
        offered = _BEARER.match(request.headers.get("Authorization", ""))
        if offered is None or not hmac.compare_digest(offered.group(1).encode(), token.encode()):
            response = HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    elif not (settings.DEBUG and _loopback(request)):
        raise Http404
    body, content_type = scrape()
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response


class MetricsMiddleware:
    """Right after ``RequestIdMiddleware``: times every request, counts it under its route
    pattern, and logs one access line (``api.access``) with the route, never the path."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        seconds = time.perf_counter() - started
        route, method, status = route_of(request), method_of(request), response.status_code
        observe(route, method, status, seconds)
        access_log.info(
            "%s %s %s %.1fms",
            method,
            route,
            status,
            seconds * 1000,
            extra={
                "route": route,
                "method": method,
                "status": status,
                "duration_ms": seconds * 1000,
            },
        )
        return response
