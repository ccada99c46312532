"""Observability without PHI (issue 14, item 6): ``/metrics`` (api/metrics.py) and JSON logs
(api/logging.py).

- The scrape needs the bearer token (401 without or wrong; 404 in production without a token
  configured; open to loopback only in development).
- Labels are route patterns: after requests whose paths and bodies hold real UUIDs and emails,
  no UUID or email appears anywhere in the scrape.
- A JSON log line of a request carries its request id, and no email or UUID of the client the
  request named.
- The scrape-time gauges count real rows (outboxes, unsealed audit events, seal lag, rooms).
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from api.logging import JsonFormatter, RedactingFilter, RequestIdFilter
from api.metrics import WEBSOCKETS_OPEN
from api.models import OutboundEmail
from audit.models import AuditEvent

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "metrics-test-token-0123456789"
UUID_RE = re.compile(r"(?i)[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}")
EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")


@pytest.fixture
def token(settings) -> str:
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


def scrape(client, token: str = TOKEN) -> str:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("text/plain")
    return response.content.decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


# --- Access ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_without_the_token_the_scrape_is_refused(client, token):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics")["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=TOKEN).status_code == 401  # no scheme
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


@pytest.mark.django_db
def test_without_a_token_configured_production_answers_404(client, settings):
    settings.METRICS_TOKEN, settings.DEBUG = "", False
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


@pytest.mark.django_db
def test_without_a_token_development_serves_loopback_only(client, settings):
    settings.METRICS_TOKEN, settings.DEBUG = "", True
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.7").status_code == 404
    proxied = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert proxied.status_code == 404


@pytest.mark.django_db
def test_only_get_is_served(client, token):
    response = client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 405


@pytest.mark.django_db
def test_a_scrape_is_not_audited_and_not_an_api_operation(client, token):
    before = AuditEvent.objects.count()
    scrape(client)
    assert AuditEvent.objects.count() == before
    assert "/metrics" not in (ROOT / "openapi.yaml").read_text(encoding="utf-8")


# --- No PHI in labels -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_labels_hold_route_patterns_never_ids_or_emails(
    client, token, client_api, anon_api, client_user
):
    """GEN-03: paths with real UUIDs (the client's own id among them) and bodies with emails,
    then not one UUID or email anywhere in the scrape output."""
    ids = [str(client_user.pk), str(uuid.uuid4()), str(uuid.uuid4())]
    client_api.get(f"/api/v1/bookings/{ids[0]}")
    client_api.post(f"/api/v1/bookings/{ids[1]}/cancel", {"reason": "x"}, format="json")
    anon_api.get(f"/api/v1/therapists/{ids[2]}")
    anon_api.get(f"/api/v1/therapists/{ids[2]}/slots")
    anon_api.get(f"/api/v1/no-such-route/{ids[0]}/{client_user.email}")
    anon_api.get(f"/nowhere/{ids[1]}")
    anon_api.post(
        "/api/v1/auth/token",
        {"email": client_user.email, "password": "not-the-password"},
        format="json",
    )
    text = scrape(client)

    assert UUID_RE.findall(text) == []
    assert EMAIL_RE.findall(text) == []
    for identifier in ids:
        assert identifier not in text and identifier.replace("-", "") not in text
    assert client_user.email not in text
    routes = {
        dict(labels)["route"]
        for (name, labels) in samples(text)
        if name == "telehealth_http_requests_total"
    }
    assert {
        "api/v1/bookings/<uuid:booking_id>",
        "api/v1/therapists/<uuid:therapist_id>",
        "api/v1/auth/token",
        "<unmatched>",
    } <= routes
    assert (
        value(
            text,
            "telehealth_http_requests_total",
            route="api/v1/auth/token",
            method="POST",
            status="4xx",
        )
        >= 1
    )


@pytest.mark.django_db
def test_5xx_answers_are_counted_as_errors(client, token, client_api, client_user, monkeypatch):
    def broken(**_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("scheduling.bookings.views.selectors.booking_for_participant", broken)
    client_api.raise_request_exception = False
    route = "api/v1/bookings/<uuid:booking_id>"
    before = value(scrape(client), "telehealth_http_server_errors_total", route=route, method="GET")
    assert client_api.get(f"/api/v1/bookings/{uuid.uuid4()}").status_code == 500
    text = scrape(client)
    assert value(text, "telehealth_http_server_errors_total", route=route, method="GET") == (
        before + 1
    )
    assert (
        value(text, "telehealth_http_request_duration_seconds_count", route=route, method="GET")
        >= 1
    )


# --- Gauges from the database ---------------------------------------------------------------------


@pytest.mark.django_db
def test_the_gauges_count_real_rows(client, token, client_user):
    from audit.chain import audit_seal
    from audit.services import audit_record
    from scheduling.models import BookingNotification, NotificationKind
    from tests.video.signalling_support import make_room

    audit_seal()
    text = scrape(client)
    assert value(text, "telehealth_audit_unsealed_events") == 0
    assert value(text, "telehealth_audit_seal_lag_seconds") == 0
    emails = value(text, "telehealth_outbox_pending", outbox="email")
    notifications = value(text, "telehealth_outbox_pending", outbox="booking_notification")
    rooms = value(text, "telehealth_video_rooms_active")

    audit_record(action="metrics.test", actor_label="system")
    now = timezone.now()
    OutboundEmail.objects.create(to="x@example.test", subject="s", body="b", created_at=now)
    setup = make_room()
    BookingNotification.objects.create(
        booking=setup.room.booking,
        recipient=client_user,
        kind=NotificationKind.values[0],
        dedupe_key="metrics",
        created_at=now,
    )
    BookingNotification.objects.create(
        booking=setup.room.booking,
        recipient=client_user,
        kind=NotificationKind.values[0],
        dedupe_key="metrics-sent",
        created_at=now,
        sent_at=now,
    )
    time.sleep(0.05)  # the database clock must move past the event's occurred_at

    text = scrape(client)
    assert value(text, "telehealth_audit_unsealed_events") >= 1
    assert value(text, "telehealth_audit_seal_lag_seconds") > 0
    assert value(text, "telehealth_outbox_pending", outbox="email") == emails + 1
    assert value(text, "telehealth_outbox_pending", outbox="booking_notification") == (
        notifications + 1
    )
    assert value(text, "telehealth_video_rooms_active") == rooms + 1

    audit_seal()
    setup.room.ended_at, setup.room.end_reason = now + timedelta(minutes=1), "window_closed"
    setup.room.save()
    text = scrape(client)
    assert value(text, "telehealth_audit_unsealed_events") == 0
    assert value(text, "telehealth_audit_seal_lag_seconds") == 0
    assert value(text, "telehealth_video_rooms_active") == rooms


@pytest.mark.django_db
def test_job_runs_and_failures_come_from_the_job_table(client, token):
    from api.models import JobRun

    succeeded = timezone.now()
    JobRun.objects.create(name="audit_seal", runs=7, failures=2, last_success_at=succeeded)
    JobRun.objects.create(name="send_emails", runs=1, failures=1)
    text = scrape(client)
    assert value(text, "telehealth_job_runs_total", job="audit_seal") == 7
    assert value(text, "telehealth_job_failures_total", job="audit_seal") == 2
    assert value(text, "telehealth_job_failures_total", job="send_emails") == 1
    stamp = value(text, "telehealth_job_last_success_timestamp_seconds", job="audit_seal")
    assert stamp == pytest.approx(succeeded.timestamp())
    assert ("telehealth_job_last_success_timestamp_seconds", (("job", "send_emails"),)) not in (
        samples(text)
    )


@pytest.mark.django_db(transaction=True)
def test_open_websockets_are_counted_until_closed(settings):
    from api.asgi import application

    # A loop of its own: not channels_redis, whose locks belong to the first loop that used them.
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

    async def run() -> tuple[float, float, float]:
        before = WEBSOCKETS_OPEN._value.get()
        ws = WebsocketCommunicator(application, f"/ws/video/{uuid.uuid4()}/")
        connected, _ = await ws.connect(timeout=5)
        assert connected
        during = WEBSOCKETS_OPEN._value.get()
        await ws.disconnect()
        return before, during, WEBSOCKETS_OPEN._value.get()

    before, during, after = async_to_sync(run)()
    assert during == before + 1
    assert after == before


# --- JSON logs ------------------------------------------------------------------------------------


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The console handler of ``LOG_FORMAT=json`` (settings.LOGGING), writing to a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    handler.addFilter(RequestIdFilter())
    loggers = [logging.getLogger(), logging.getLogger("django.request")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    yield buffer
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.django_db
def test_a_json_log_line_carries_the_request_id_and_no_client_email_or_uuid(
    json_log, client_api, client_user, monkeypatch
):
    """A request naming the client's UUID in its path fails with an exception whose text holds
    the client's email and UUID: Django logs it (path and traceback), we log the access line;
    every line is JSON with the request id, and neither the email nor the UUID is in any."""
    email, client_id = client_user.email, str(client_user.pk)

    def broken(**_: object) -> None:
        raise RuntimeError(f"booking of {email} ({client_id}) could not be read")

    monkeypatch.setattr("scheduling.bookings.views.selectors.booking_for_participant", broken)
    client_api.raise_request_exception = False
    response = client_api.get(f"/api/v1/bookings/{client_id}", HTTP_X_REQUEST_ID="req-0123456789")
    assert response.status_code == 500

    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    mine = [line for line in lines if line["request_id"] == "req-0123456789"]
    assert {line["logger"] for line in mine} >= {"django.request", "api.access"}
    access = next(line for line in mine if line["logger"] == "api.access")
    assert access["route"] == "api/v1/bookings/<uuid:booking_id>"
    assert access["status"] == 500
    error = next(line for line in mine if line["logger"] == "django.request")
    assert "RuntimeError" in error["exception"]
    assert "[email]" in error["exception"] and "[uuid]" in error["exception"]
    output = json_log.getvalue()
    assert email not in output
    assert client_id not in output and client_id.replace("-", "") not in output
    assert EMAIL_RE.findall(output) == []


def test_outside_a_request_the_request_id_is_a_dash(json_log):
    logging.getLogger("tests.metrics").warning("no request here")
    (line,) = [json.loads(x) for x in json_log.getvalue().splitlines()]
    assert line["request_id"] == "-"
    assert line["level"] == "WARNING"
    assert line["message"] == "no request here"


def test_log_format_json_is_the_production_default_and_text_the_development_one():
    from tests.api.test_settings import clean_env, production_secrets, run_python

    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "h = s.LOGGING['handlers']['console']; print(json.dumps([s.LOG_FORMAT, h]))"
    )
    for env, expected in [
        (clean_env(**production_secrets()), "json"),
        (clean_env(DJANGO_DEBUG="1"), "text"),
        (clean_env(DJANGO_DEBUG="1", LOG_FORMAT="json"), "json"),
    ]:
        done = run_python(code, env)
        assert done.returncode == 0, done.stderr[-2000:]
        log_format, handler = json.loads(done.stdout)
        assert log_format == handler["formatter"] == expected
        assert handler["filters"] == ["redact", "request_id"]
    refused = run_python(
        "import django; django.setup()", clean_env(DJANGO_DEBUG="1", LOG_FORMAT="xml")
    )
    assert "LOG_FORMAT must be json or text" in refused.stderr


# --- Several processes ----------------------------------------------------------------------------


def test_multiprocess_mode_sums_the_workers_samples(tmp_path):
    """With PROMETHEUS_MULTIPROC_DIR, each process writes its samples there and a scrape from
    any process reads them all (here: two processes count a request each)."""
    from tests.api.test_settings import clean_env, run_python

    count = (
        "import django; django.setup(); from api.metrics import observe; "
        "observe('api/v1/x', 'GET', 200, 0.01)"
    )
    read = (
        "import django; django.setup(); from prometheus_client import generate_latest; "
        "from api.metrics import process_metrics; "
        "print(generate_latest(process_metrics()).decode())"
    )
    env = clean_env(DJANGO_DEBUG="1", PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    for _ in range(2):
        done = run_python(count, env)
        assert done.returncode == 0, done.stderr[-2000:]
    done = run_python(read, env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (
        value(
            done.stdout,
            "telehealth_http_requests_total",
            route="api/v1/x",
            method="GET",
            status="2xx",
        )
        == 2
    )
    missing = run_python(
        "import django; django.setup()",
        clean_env(DJANGO_DEBUG="1", PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "absent")),
    )
    assert "PROMETHEUS_MULTIPROC_DIR must name an existing directory" in missing.stderr
