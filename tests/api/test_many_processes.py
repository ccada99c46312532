"""Many machines in one test (docs/deploy.md): two uvicorn web processes, a Celery worker and
Celery beat, all separate processes, sharing PostgreSQL and Redis (the broker, the cache, the
channel layer) and nothing else. The journey crosses them:

1. a client signs in and books on web process 1, and starts paying there;
2. the card is confirmed at localstripe (the Stripe emulator, as Stripe.js would), which sends
   the signed ``payment_intent.succeeded`` webhook to web process 2 only: it confirms the booking;
3. the worker starts and sends the booking emails the web processes enqueued, then the session's
   last reminder (its lead shortened through settings to a few seconds from then), exactly once,
   read back from the files the email backend wrote, while beat keeps scheduling the reminder
   job every second;
4. beat and the worker seal the audit trail: ``manage.py audit_verify`` says OK, nothing unsealed;
5. every process stops cleanly on SIGTERM.

PostgreSQL and Redis are required: skipped without them locally, a failure in CI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import TypeVar

import pytest
import requests
import stripe
from django.utils import timezone

from api.models import JobRun, Role, User
from billing.models import Payment, StripeEvent
from scheduling import selectors
from scheduling import services as profiles
from scheduling.models import (
    Booking,
    BookingNotification,
    BookingStatus,
    NotificationKind,
    SessionType,
    TherapistProfile,
)
from tests.api.processes import database_url
from tests.billing.stripe_doubles import (
    LOCALSTRIPE_KEY,
    PUBLISHABLE_KEY,
    WEBHOOK_SECRET,
    LocalStripe,
)
from tests.factories import DEFAULT_PASSWORD, make_user
from tests.live import free_port, manage

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.redis,
]
ROOT = Path(__file__).resolve().parents[2]
WEBHOOK_ROUTE = "api/v1/billing/webhooks/stripe"
REMINDER_SUBJECT = "Telehealth: reminder of your session in an hour"
# Every bounded wait: long enough for a loaded 2-core CI box, failing with the logs after it.
DEADLINE_SECONDS = 90
T = TypeVar("T")


@dataclass
class Processes:
    """The app's processes, each logging to its own file in ``workdir``."""

    workdir: Path
    env: dict[str, str]
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, args: list[str], **env: str) -> None:
        with (self.workdir / f"{name}.log").open("wb") as log:
            self.running[name] = subprocess.Popen(
                [sys.executable, "-m", *args],
                cwd=ROOT,
                env={**self.env, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def web(self, name: str) -> str:
        port = free_port()
        self.start(
            name,
            ["uvicorn", "api.asgi:application", "--host", "127.0.0.1", "--port", str(port)]
            + ["--no-access-log"],
        )
        url = f"http://127.0.0.1:{port}"
        self.until(lambda: _healthy(url), f"{name} answers /healthz")
        return url

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def until(self, reached: Callable[[], T | None], what: str) -> T:
        """Poll ``reached`` until it returns something truthy (no fixed sleep); fail with every
        process's log after ``DEADLINE_SECONDS``, or at once when a process has exited."""
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            value = reached()
            if value:
                return value
            exited = {n: p.returncode for n, p in self.running.items() if p.poll() is not None}
            if exited or time.monotonic() > deadline:
                logs = {n: self.log(n)[-3000:] for n in self.running}
                pytest.fail(f"not reached: {what}; exited: {exited}; logs: {logs}")
            time.sleep(0.25)

    def stop(self) -> dict[str, int | None]:
        """SIGTERM to each, then wait; what each exited with (None: it had to be killed)."""
        for process in self.running.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for name, process in self.running.items():
            try:
                codes[name] = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                codes[name] = None
        return codes


def _healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def localstripe(tmp_path: Path) -> Iterator[LocalStripe]:
    server = LocalStripe(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def processes(tmp_path: Path, localstripe: LocalStripe) -> Iterator[Processes]:
    """The environment every process shares (as one deployment's machines would), and the
    processes, stopped at the end whatever happened (the test itself checks a clean stop)."""
    (tmp_path / "mail").mkdir()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "api.settings",
        "DJANGO_DEBUG": "1",
        "DATABASE_URL": database_url(tmp_path),
        # REDIS_URL as the suite has it (this xdist worker's database); the broker's keys
        # under a prefix of this test's own.
        "CELERY_KEY_PREFIX": f"test-many-processes-{uuid.uuid4().hex}:",
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "JOBS_DIR": str(tmp_path / "jobs"),
        "JOBS_FREQUENT_SECONDS": "1",
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(tmp_path / "mail"),
        "BOOKING_EMAILS_AFTER_COMMIT": "1",
        "BILLING_GATEWAY": "stripe",
        "STRIPE_SECRET_KEY": LOCALSTRIPE_KEY,
        "STRIPE_PUBLISHABLE_KEY": PUBLISHABLE_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": localstripe.url,
        "STRIPE_MAX_RETRIES": "0",
        "JWT_ACCESS_TTL_SECONDS": "3600",  # the client's one sign-in outlives a slow run
        "LOG_FORMAT": "text",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    running = Processes(workdir=tmp_path, env=env)
    try:
        yield running
    finally:
        running.stop()


def _therapist_open_now(now: datetime) -> TherapistProfile:
    """A verified therapist, licensed in US-NY, open every day around the clock, no notice,
    selling a paid 50-minute video session."""
    user = make_user(role=Role.THERAPIST, password=None)
    admin = make_user(role=Role.ADMIN, password=None)
    profile = profiles.therapist_profile_create(
        user=user,
        display_name=f"Dr {user.full_name}",
        time_zone="UTC",
        now=now,
        min_notice_minutes=0,
    )
    profiles.availability_rules_replace(
        profile=profile,
        windows=[profiles.WeeklyWindowInput(d, 0, 24 * 60) for d in range(7)],
        now=now,
    )
    profiles.session_type_create(
        profile=profile,
        name="Video session",
        duration_minutes=50,
        price_minor=9000,
        currency="USD",
        delivery="video",
        now=now,
    )
    licence = profiles.licence_create(
        profile=profile,
        jurisdiction="US-NY",
        number=f"LIC-{user.pk.hex[:8]}",
        expires_on=date(now.year + 2, 1, 1),
        actor=user,
        request=None,
        now=now,
    )
    profiles.licence_verify(licence_id=licence.pk, admin=admin, request=None, now=now)
    return TherapistProfile.objects.get(pk=profile.pk)


def _emails(folder: Path) -> list[Message]:
    """Every message the file-based email backend wrote (one file per connection, messages
    separated by a line of 79 dashes)."""
    messages = []
    for path in sorted(folder.glob("*.log")):
        for chunk in path.read_bytes().split(b"\n" + b"-" * 79 + b"\n"):
            if chunk.strip():
                messages.append(message_from_bytes(chunk))
    return messages


def _sent(folder: Path, *, subject: str, to: str) -> int:
    return sum(1 for m in _emails(folder) if m["Subject"] == subject and m["To"] == to)


def _job_runs(name: str) -> int:
    return JobRun.objects.filter(name=name).values_list("runs", flat=True).first() or 0


def test_a_journey_across_two_web_processes_a_worker_and_beat(
    processes: Processes, localstripe: LocalStripe, tmp_path: Path
) -> None:
    mail = tmp_path / "mail"
    now = timezone.now()
    therapist = _therapist_open_now(now)
    session_type = SessionType.objects.get(therapist=therapist)
    client = make_user(role=Role.CLIENT)  # with a password: it signs in over HTTP
    [start, *_] = selectors.therapist_open_slots(
        therapist=therapist,
        session_type=session_type,
        start=now + timedelta(minutes=5),
        end=now + timedelta(hours=2),
        now=now,
    )

    web1 = processes.web("web1")
    web2 = processes.web("web2")
    localstripe.register_webhook(f"{web2}/{WEBHOOK_ROUTE}")  # Stripe's one endpoint: web 2

    # 1. Sign in, book and start paying on web process 1.
    signed_in = requests.post(
        f"{web1}/api/v1/auth/token",
        json={"email": client.email, "password": DEFAULT_PASSWORD},
        timeout=30,
    )
    assert signed_in.status_code == 200, signed_in.text
    auth = {"Authorization": f"Bearer {signed_in.json()['access']}"}
    booked = requests.post(
        f"{web1}/api/v1/bookings/",
        json={
            "therapist": str(therapist.pk),
            "session_type": str(session_type.pk),
            "start": start.isoformat(),
            "jurisdiction": "US-NY",
        },
        headers={**auth, "Idempotency-Key": f"book-{uuid.uuid4().hex}"},
        timeout=30,
    )
    assert booked.status_code == 201, booked.text
    assert booked.json()["status"] == BookingStatus.HELD
    booking_id = booked.json()["id"]
    paying = requests.post(
        f"{web1}/api/v1/bookings/{booking_id}/pay",
        json={},
        headers={**auth, "Idempotency-Key": f"pay-{uuid.uuid4().hex}"},
        timeout=30,
    )
    assert paying.status_code == 200, paying.text
    intent_id = paying.json()["payment_intent_id"]

    # 2. The card, as Stripe.js confirms it; Stripe's webhook reaches web process 2 only.
    sdk = stripe.StripeClient(
        LOCALSTRIPE_KEY,
        base_addresses={"api": localstripe.url},
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=(2, 30)),
    )
    sdk.v1.payment_intents.update(intent_id, params={"payment_method": "pm_card_visa"})
    sdk.v1.payment_intents.confirm(intent_id)
    processes.until(
        lambda: Booking.objects.filter(pk=booking_id, status=BookingStatus.CONFIRMED).exists(),
        "the webhook confirms the booking",
    )
    payment = Payment.objects.get(booking_id=booking_id)
    assert payment.state == Payment.State.SUCCEEDED
    [event] = StripeEvent.objects.filter(payment=payment, type="payment_intent.succeeded")
    assert event.outcome == "applied"
    processes.until(  # its access line follows the response
        lambda: f"POST {WEBHOOK_ROUTE} 200" in processes.log("web2"), "web 2 logs the webhook"
    )
    assert WEBHOOK_ROUTE not in processes.log("web1")
    # Both web processes serve the same state: web 2 shows the client the confirmed booking.
    seen = requests.get(f"{web2}/api/v1/bookings/{booking_id}", headers=auth, timeout=30)
    assert (seen.status_code, seen.json()["status"]) == (200, BookingStatus.CONFIRMED)
    # No worker yet: the emails wait in the broker, none was sent by a web process.
    assert _emails(mail) == []

    # 3. The worker and beat; the last reminder is due a few seconds after they start (the
    # booking was confirmed before that, so it is not skipped as "just announced").
    lead = int((start - timezone.now()).total_seconds()) - 3
    assert lead > 60, "the slot is too close to shorten the reminder before it"
    reminder_lead = {
        "BOOKING_REMINDER_LAST_SECONDS": str(lead),
        "BOOKING_REMINDER_FIRST_SECONDS": str(24 * 3600),
    }
    processes.start(
        "worker",
        ["celery", "-A", "api", "worker", "--loglevel=INFO", "--concurrency=1"],
        **reminder_lead,
    )
    processes.start("beat", ["celery", "-A", "api", "beat", "--loglevel=INFO"], **reminder_lead)
    for kind in ("booked", "confirmed"):
        subject = f"Telehealth: session {kind}"
        processes.until(
            lambda subject=subject: _sent(mail, subject=subject, to=client.email) == 1,
            f"the {kind} email reaches the client",
        )
    processes.until(
        lambda: _sent(mail, subject=REMINDER_SUBJECT, to=client.email),
        "the reminder reaches the client",
    )
    # Exactly once: three more runs of the reminder job later, still one each.
    runs = _job_runs("send_reminders")
    processes.until(lambda: _job_runs("send_reminders") >= runs + 3, "three more reminder runs")
    therapist_email = User.objects.get(pk=therapist.user_id).email
    assert _sent(mail, subject=REMINDER_SUBJECT, to=client.email) == 1
    assert _sent(mail, subject=REMINDER_SUBJECT, to=therapist_email) == 1
    rows = BookingNotification.objects.filter(booking_id=booking_id)
    assert sorted((row.kind, row.sent_at is not None) for row in rows) == sorted(
        [(kind, True) for kind in (NotificationKind.BOOKED, NotificationKind.CONFIRMED)] * 2
        + [(NotificationKind.REMINDER_1H, True)] * 2
    )

    # 4. The trail, sealed by the worker on beat's schedule, verifies.
    def verified() -> str | None:
        report = manage(processes.env, "audit_verify")
        return (
            report if report.startswith("OK: ") and "; 0 events not sealed yet" in report else None
        )

    processes.until(verified, "audit_verify reports the whole trail sealed")
    status = {
        row["job"]: row
        for row in map(json.loads, manage(processes.env, "jobs_status", "--json").splitlines())
    }
    for job in ("audit_seal", "send_reminders"):
        assert status[job]["last_success"] and status[job]["failures"] == 0, status[job]

    # 5. A clean stop: each process ends by itself on SIGTERM.
    # (uvicorn ends its graceful shutdown by raising the signal it caught again.)
    assert processes.stop() == {
        "web1": -signal.SIGTERM,
        "web2": -signal.SIGTERM,
        "worker": 0,
        "beat": 0,
    }
    for web in ("web1", "web2"):
        assert "Finished server process" in processes.log(web)
