"""A real Celery worker and beat (separate processes, filesystem broker) run a scheduled job end
to end: an unsealed audit event is sealed by the beat-scheduled ``audit_seal`` task, and the
run is recorded for ``jobs_status``. Against a SQLite file, or PostgreSQL's test database
when DATABASE_URL is set; it never skips."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection

from tests.api.processes import database_url

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]

STATE = """
import django, json
django.setup()
from api.models import JobRun
from audit.chain import chain_head
from audit.models import AuditEvent
run = JobRun.objects.filter(name="audit_seal").first()
print(json.dumps({
    "events": AuditEvent.objects.count(),
    "head_seq": chain_head().seq,
    "seal_runs": run.runs if run else 0,
    "seal_successes": bool(run and run.last_success_at),
}))
"""
RECORD = """
import django
django.setup()
from audit.services import audit_record
audit_record(action="test.jobs.process")
"""


@pytest.fixture
def frequent_seconds() -> str:
    return "1"


@pytest.fixture
def env(tmp_path: Path, frequent_seconds: str) -> dict[str, str]:
    values = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "api.settings",
        "DJANGO_DEBUG": "1",
        "DATABASE_URL": database_url(tmp_path),
        "CELERY_BROKER_URL": "filesystem://",
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "JOBS_DIR": str(tmp_path / "jobs"),
        "JOBS_FREQUENT_SECONDS": frequent_seconds,
        "LOG_FORMAT": "text",
    }
    if connection.vendor != "postgresql":  # PostgreSQL's test database is migrated already
        _run([sys.executable, "manage.py", "migrate", "--no-input", "-v0"], values)
    return values


def _run(args: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _state(env: dict[str, str]) -> dict[str, int]:
    return json.loads(_run([sys.executable, "-c", STATE], env))


@pytest.fixture
def processes(env: dict[str, str], tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    commands = {
        "worker": ["worker", "--loglevel=INFO", "--concurrency=1"],
        "beat": ["beat", "--loglevel=INFO"],
    }
    for name, args in commands.items():
        log = (tmp_path / f"{name}.log").open("wb")
        started.append(
            subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "api", *args],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    yield started
    for process in started:
        process.send_signal(signal.SIGTERM)
    for process in started:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _until(
    reached: Callable[[dict[str, int]], bool], env: dict[str, str], seconds: float, logs: Path
) -> dict[str, int]:
    """Poll the database until ``reached`` (no fixed sleep), failing with the logs after
    ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        state = _state(env)
        if reached(state):
            return state
        if time.monotonic() > deadline:
            tails = {p.name: p.read_text()[-3000:] for p in logs.glob("*.log")}
            pytest.fail(f"not reached in {seconds} s; state {state}; logs {tails}")
        time.sleep(0.5)


@pytest.fixture
def waiting_event(env: dict[str, str]) -> dict[str, int]:
    """An unsealed event recorded before the worker and beat start (request it first)."""
    _run([sys.executable, "-c", RECORD], env)
    return _state(env)


def test_beat_schedules_the_seal_and_a_worker_runs_it(
    env: dict[str, str],
    waiting_event: dict[str, int],
    processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    before = waiting_event
    assert before["head_seq"] < before["events"]  # at least our event is waiting
    state = _until(
        lambda now: now["head_seq"] >= before["events"] and bool(now["seal_successes"]),
        env,
        90,
        tmp_path,
    )
    assert state["seal_runs"] >= 1
    status = _run([sys.executable, "manage.py", "jobs_status", "--json"], env)
    rows = {row["job"]: row for row in map(json.loads, status.splitlines())}
    assert rows["audit_seal"]["last_success"] and rows["audit_seal"]["failures"] == 0
    verify = _run([sys.executable, "manage.py", "audit_verify"], env)
    assert verify.startswith("OK: ") and "; 0 events not sealed yet" in verify
    assert all(process.poll() is None for process in processes)  # both still running


@pytest.mark.parametrize("frequent_seconds", ["3600"])
def test_beat_runs_the_frequent_jobs_as_it_starts(
    env: dict[str, str],
    waiting_event: dict[str, int],
    processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    """An hour between runs: only the run sent as beat starts can seal the event (a fresh
    `make run` seals its trail at once, not a minute later)."""
    assert waiting_event["head_seq"] < waiting_event["events"]
    state = _until(lambda now: now["head_seq"] >= waiting_event["events"], env, 60, tmp_path)
    assert state["seal_runs"] == 1
