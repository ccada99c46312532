"""Periodic jobs on Celery: each is a thin task that calls one service (the same one its
management command calls), records its run on a ``JobRun`` row and is retried with back-off.

Every job is safe to run twice or on two machines at once (its service claims rows with a
conditional update or is idempotent), so a retry, a late duplicate from beat or an operator
running the command by hand changes nothing twice. Failures are logged and recorded with the
exception's type only: an exception's message can quote PHI (an email, a name, a row's values).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import shared_task
from django.db.models import F
from django.utils import timezone

from api.models import JobRun

logger = logging.getLogger("api.jobs")

# Retries: 1, 2, 4 … seconds after a failure (jittered, at most 5 minutes), 5 times; the next
# scheduled run starts afresh anyway.
RETRY_OPTIONS: dict[str, Any] = {
    "retry_backoff": True,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 5,
}


class JobFailed(Exception):
    """A job's failure, naming only the job and the exception's type (no message: PHI)."""


def job_started(name: str) -> None:
    JobRun.objects.get_or_create(name=name)
    JobRun.objects.filter(name=name).update(runs=F("runs") + 1, last_started_at=timezone.now())


def job_succeeded(name: str) -> None:
    JobRun.objects.filter(name=name).update(last_success_at=timezone.now())


def job_failed(name: str, error: str) -> None:
    JobRun.objects.filter(name=name).update(
        failures=F("failures") + 1, last_failure_at=timezone.now(), last_error=error[:64]
    )


def job_run(name: str, work: Callable[[], Any]) -> Any:
    """Run ``work`` as the job ``name``: record the run, its success or its failure. A failure
    is re-raised as ``JobFailed`` without the original message or its chain."""
    job_started(name)
    try:
        result = work()
    except Exception as exc:  # noqa: BLE001 - every failure is recorded, then retried
        error = type(exc).__name__
        logger.warning("job %s failed: %s", name, error)
        job_failed(name, error)
        raise JobFailed(f"{name} failed: {error}") from None
    job_succeeded(name)
    return result


def periodic_job(name: str) -> Callable[[Callable[[], Any]], Any]:
    """Declare the Celery task ``name`` (no arguments; results ignored) running ``work`` through
    ``job_run`` and retried with exponential back-off when it fails."""

    def declare(work: Callable[[], Any]) -> Any:
        def task() -> Any:
            return job_run(name, work)

        task.__name__ = task.__qualname__ = work.__name__
        task.__doc__ = work.__doc__
        task.__module__ = work.__module__
        return shared_task(
            name=name, ignore_result=True, autoretry_for=(JobFailed,), **RETRY_OPTIONS
        )(task)

    return declare
