"""Periodic jobs on Celery (api/jobs.py, <app>/tasks.py): each task runs its command's service,
records its run for ``jobs_status``, is retried with back-off, and logs failures without PHI."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from celery import current_app
from celery.signals import task_prerun
from django.conf import settings
from django.core import mail
from django.core.management import call_command
from django.db import transaction

from api import jobs
from api.models import JobRun, OutboundEmail
from api.services.mail import emails_send_queued, mail_queue
from audit.models import AuditSeal
from audit.services import audit_record
from tests.live import free_port

pytestmark = pytest.mark.django_db

# Each job: the module its task lives in, and the service (by name in that module) it calls.
SERVICES = {
    "audit_seal": ("audit.tasks", "chain_seal"),
    "audit_checkpoint": ("audit.tasks", "audit_checkpoint_create"),
    "send_emails": ("api.tasks", "emails_send_queued"),
    "send_reminders": ("scheduling.tasks", "reminders_send"),
    "refresh_availability": ("scheduling.tasks", "availability_summaries_refresh"),
    "sync_calendars": ("scheduling.tasks", "external_calendars_sync_due"),
    "expire_holds": ("scheduling.tasks", "holds_expire"),
    "billing_settle": ("billing.tasks", "lifecycle_settle"),
    "video_no_shows": ("video.tasks", "therapist_no_shows_record"),
    "video_completions": ("video.tasks", "attended_sessions_complete"),
    "video_lost_processes": ("video.tasks", "lost_processes_sweep"),
    "send_message_notifications": ("messaging.tasks", "message_notifications_send"),
    "messaging_retention": ("messaging.tasks", "messages_erase_all_expired"),
    "messaging_orphan_files": ("messaging.tasks", "attachment_orphans_delete"),
}


def _task(name: str) -> Any:
    current_app.loader.import_default_modules()
    return current_app.tasks[name]


def test_every_scheduled_job_is_a_task_and_the_schedule_is_as_documented() -> None:
    minute = settings.JOBS_FREQUENT_SECONDS
    assert {name: entry["schedule"] for name, entry in settings.CELERY_BEAT_SCHEDULE.items()} == {
        "audit_seal": minute,
        "send_reminders": minute,
        "send_emails": minute,
        "billing_settle": minute,
        "refresh_availability": minute,
        "video_no_shows": minute,
        "video_completions": minute,
        "video_lost_processes": minute,
        "send_message_notifications": minute,
        "sync_calendars": settings.CALENDAR_SYNC_INTERVAL_MINUTES * 60,
        "expire_holds": 15 * 60,
        "audit_checkpoint": 3600,
        "messaging_retention": 24 * 3600,
        "messaging_orphan_files": 24 * 3600,
    }
    assert minute == 60
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        task = _task(entry["task"])
        assert task.ignore_result is True
        assert task.autoretry_for == (jobs.JobFailed,)
        assert task.retry_backoff is True
        assert task.max_retries == 5
        assert entry["options"] == {"expires": entry["schedule"]}
    assert set(SERVICES) == set(settings.CELERY_BEAT_SCHEDULE)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_each_task_calls_its_commands_service_and_records_the_run(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module, service = SERVICES[name]
    calls: list[dict[str, Any]] = []

    class Result:  # what the audit services return, reduced to what the tasks read
        sealed = 0
        head = type("Head", (), {"seq": 0})()
        document: dict[str, Any] = {"seq": 0}

    def fake(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return Result() if module == "audit.tasks" else {}

    monkeypatch.setattr(f"{module}.{service}", fake)
    _task(name).apply(throw=True)
    assert len(calls) == 1
    row = JobRun.objects.get(name=name)
    assert (row.runs, row.failures, row.last_error) == (1, 0, "")
    assert row.last_started_at is not None
    assert row.last_success_at is not None
    assert row.last_failure_at is None


def test_the_management_commands_run_the_same_services(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    monkeypatch.setattr(
        "api.management.commands.send_emails.emails_send_queued",
        lambda **kw: seen.append("emails") or {"sent": 0, "failed": 0, "given_up": 0},
    )
    monkeypatch.setattr(
        "scheduling.management.commands.send_reminders.reminders_send",
        lambda **kw: seen.append("reminders") or {"due": 0, "sent": 0, "dropped": 0, "failed": 0},
    )
    monkeypatch.setattr(
        "scheduling.management.commands.refresh_availability.availability_summaries_refresh",
        lambda **kw: seen.append("availability") or 0,
    )
    monkeypatch.setattr(
        "scheduling.management.commands.sync_calendars.external_calendars_sync_due",
        lambda **kw: seen.append("calendars") or {},
    )
    for command in ("send_emails", "send_reminders", "refresh_availability", "sync_calendars"):
        call_command(command, stdout=io.StringIO())
    assert seen == ["emails", "reminders", "availability", "calendars"]


def test_a_failure_is_recorded_retried_and_logged_without_its_message(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    def failing(**kwargs: Any) -> Any:
        raise ValueError("alice@example.test Alice Smith could not be reached")

    monkeypatch.setattr("api.tasks.emails_send_queued", failing)
    task = _task("send_emails")
    retries: list[dict[str, Any]] = []
    monkeypatch.setattr(task, "retry", lambda **kw: retries.append(kw) or kw["exc"])
    with pytest.raises(jobs.JobFailed) as raised:
        task()
    assert len(retries) == 1 and isinstance(retries[0]["exc"], jobs.JobFailed)
    assert retries[0]["countdown"] >= 0  # Celery's exponential back-off, jittered
    assert str(raised.value) == "send_emails failed: ValueError"
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    row = JobRun.objects.get(name="send_emails")
    assert (row.runs, row.failures, row.last_error) == (1, 1, "ValueError")
    assert row.last_failure_at is not None and row.last_success_at is None
    logged = capfd.readouterr().err
    assert "job send_emails failed: ValueError" in logged
    assert "alice" not in logged.lower() and "smith" not in logged.lower()


def test_a_retry_waits_longer_each_time() -> None:
    task = _task("audit_seal")
    from celery.utils.time import get_exponential_backoff_interval

    delays = [
        get_exponential_backoff_interval(
            factor=1, retries=n, maximum=task.retry_backoff_max, full_jitter=False
        )
        for n in range(5)
    ]
    assert delays == [1, 2, 4, 8, 16]


def test_the_seal_task_run_twice_changes_nothing_the_second_time() -> None:
    audit_record(action="test.jobs")
    task = _task("audit_seal")
    task.apply(throw=True)
    links = list(AuditSeal.objects.order_by("seq").values_list("seq", "hash"))
    assert links
    task.apply(throw=True)
    assert list(AuditSeal.objects.order_by("seq").values_list("seq", "hash")) == links
    assert JobRun.objects.get(name="audit_seal").runs == 2


def test_jobs_status_shows_each_job_and_its_failures() -> None:
    jobs.job_run("audit_seal", lambda: None)
    with pytest.raises(jobs.JobFailed):
        jobs.job_run("billing_settle", lambda: 1 / 0)
    out = io.StringIO()
    call_command("jobs_status", "--json", stdout=out)
    rows = {row["job"]: row for row in map(json.loads, out.getvalue().splitlines())}
    assert sorted(rows) == sorted(settings.CELERY_BEAT_SCHEDULE)
    assert rows["audit_seal"]["runs"] == 1 and rows["audit_seal"]["last_success"]
    assert rows["audit_seal"]["failures"] == 0 and rows["audit_seal"]["last_failure"] is None
    settle = rows["billing_settle"]
    assert (settle["runs"], settle["failures"], settle["last_error"]) == (
        1,
        1,
        "ZeroDivisionError",
    )
    assert settle["last_success"] is None and settle["last_failure"]
    assert rows["expire_holds"] == {
        "job": "expire_holds",
        "runs": 0,
        "last_run": None,
        "last_success": None,
        "last_failure": None,
        "failures": 0,
        "last_error": None,
    }
    table = io.StringIO()
    call_command("jobs_status", stdout=table)
    lines = table.getvalue().splitlines()
    assert lines[0].split() == [
        "job",
        "runs",
        "last_run",
        "last_success",
        "last_failure",
        "failures",
    ]
    assert lines[1].split()[0] == "audit_checkpoint" and "never" in lines[1]


# --- After-commit work (api.jobs.after_commit_task, enqueue_after_commit) -----------------------

AFTER_COMMIT_TASKS = (
    "deliver_emails",
    "deliver_booking_emails",
    "send_refund",
    "reverse_payout",
    "deliver_dev_events",
)
MAIL_NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def task_runs() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Each task run (its name and keyword arguments), as Celery's ``task_prerun`` signal
    reports it (the suite runs tasks where they are sent: CELERY_TASK_ALWAYS_EAGER)."""
    runs: list[tuple[str, dict[str, Any]]] = []

    def record(sender: Any = None, kwargs: dict[str, Any] | None = None, **_: Any) -> None:
        runs.append((sender.name, dict(kwargs or {})))

    task_prerun.connect(record, weak=False)
    yield runs
    task_prerun.disconnect(record)


@pytest.fixture
def broker_down() -> Iterator[None]:
    """Tasks go to a broker that refuses connections: a loopback port nobody listens on. The
    app's connection and producer pools are set aside (Celery takes a producer even to run a
    task eagerly) and given back after."""
    app = current_app
    saved = (app.conf.task_always_eager, app.conf.broker_url, app._pool, app.amqp._producer_pool)
    app._pool = app.amqp._producer_pool = None
    app.conf.task_always_eager = False
    app.conf.broker_url = f"redis://127.0.0.1:{free_port()}/0"
    try:
        yield
    finally:
        if app._pool is not None:
            app._pool.force_close_all()
        app.conf.task_always_eager, app.conf.broker_url, app._pool, app.amqp._producer_pool = saved


def _queue_email(to: str = "alice.smith@example.test") -> None:
    mail_queue(to=to, subject="Telehealth: a notice", body="Hello.", now=MAIL_NOW)


@pytest.mark.parametrize("name", AFTER_COMMIT_TASKS)
def test_after_commit_tasks_ignore_results_and_retry_with_back_off(name: str) -> None:
    task = _task(name)
    assert task.ignore_result is True
    assert task.autoretry_for == (jobs.JobFailed,)
    assert (task.retry_backoff, task.retry_jitter, task.max_retries) == (True, True, 5)


def test_the_work_is_a_task_sent_once_the_change_commits_with_ids_and_an_instant(
    django_capture_on_commit_callbacks: Any, task_runs: list[tuple[str, dict[str, Any]]]
) -> None:
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        _queue_email()
        assert task_runs == []  # nothing before the commit
    [row_id] = task_runs[0][1]["ids"]
    assert task_runs == [("deliver_emails", {"ids": [row_id], "now": "2026-03-02T09:00:00+00:00"})]
    assert json.loads(json.dumps(task_runs)) == [list(run) for run in task_runs]  # primitives
    assert [m.to for m in mail.outbox] == [["alice.smith@example.test"]]
    assert OutboundEmail.objects.count() == 0


def test_a_rolled_back_change_sends_no_task(
    django_capture_on_commit_callbacks: Any, task_runs: list[tuple[str, dict[str, Any]]]
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            _queue_email()
            raise RuntimeError("the change failed")
    assert (callbacks, task_runs, mail.outbox) == ([], [], [])
    assert OutboundEmail.objects.count() == 0


def test_a_second_run_of_the_task_sends_nothing_more(
    django_capture_on_commit_callbacks: Any, task_runs: list[tuple[str, dict[str, Any]]]
) -> None:
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        _queue_email()
    [(name, kwargs)] = task_runs
    _task(name).apply(kwargs=kwargs, throw=True)
    assert len(task_runs) == 2 and len(mail.outbox) == 1


def test_a_broker_that_is_down_fails_nothing_and_the_sweep_sends_the_email(
    broker_down: None,
    django_capture_on_commit_callbacks: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        _queue_email()
    assert mail.outbox == [] and OutboundEmail.objects.count() == 1
    [record] = [r for r in caplog.records if r.name == "api.jobs"]
    assert record.levelname == "WARNING"
    assert record.getMessage() == "task deliver_emails not enqueued: OperationalError"
    assert "alice" not in caplog.text.lower()  # no address, no name: the task and the error type
    assert emails_send_queued(now=MAIL_NOW) == {"sent": 1, "failed": 0, "given_up": 0}
    assert [m.to for m in mail.outbox] == [["alice.smith@example.test"]]


def test_a_failing_task_is_retried_and_logged_without_its_message(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    def failing(**kwargs: Any) -> Any:
        raise ValueError("alice@example.test Alice Smith could not be reached")

    monkeypatch.setattr("api.tasks.emails_deliver", failing)
    task = _task("deliver_emails")
    retries: list[dict[str, Any]] = []
    monkeypatch.setattr(task, "retry", lambda **kw: retries.append(kw) or kw["exc"])
    with pytest.raises(jobs.JobFailed) as raised:
        task(ids=[1], now=MAIL_NOW.isoformat())
    assert len(retries) == 1 and retries[0]["countdown"] >= 0
    assert str(raised.value) == "deliver_emails failed: ValueError"
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    logged = capfd.readouterr().err
    assert "task deliver_emails failed: ValueError" in logged
    assert "alice" not in logged.lower()
