"""Jobs on Celery. Periodic jobs: each is a thin task that calls one service (the same one its
management command calls), records its run on a ``JobRun`` row and is retried with back-off.
After-commit work (sending emails, a refund, the development gateway's events): a task taking
ids and primitive values only, enqueued once the change that asked for it commits
(``enqueue_after_commit``), retried with back-off; the periodic job that does the same work is
its safety net when the broker cannot take it.

Every job is safe to run twice or on two machines at once (its service claims rows with a
conditional update or is idempotent), so a retry, a late duplicate from beat or an operator
running the command by hand changes nothing twice. Failures are logged and recorded with the
exception's type only: an exception's message can quote PHI (an email, a name, a row's values).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from celery import shared_task
from django.db import transaction
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


def after_commit_task(name: str) -> Callable[[Callable[..., Any]], Any]:
    """Declare the Celery task ``name`` for work enqueued after a commit: keyword arguments
    that are ids and primitive values (never model instances: the row may have changed since),
    results ignored, retried with exponential back-off when it fails. The work must be safe to
    run twice (it claims its rows, or checks what is done): a retry, or the sweep running it at
    the same time, changes nothing twice. A failure is logged with the exception's type only."""

    def declare(work: Callable[..., Any]) -> Any:
        @functools.wraps(work)
        def task(**kwargs: Any) -> Any:
            try:
                return work(**kwargs)
            except Exception as exc:  # noqa: BLE001 - logged without its message, then retried
                error = type(exc).__name__
                logger.warning("task %s failed: %s", name, error)
                raise JobFailed(f"{name} failed: {error}") from None

        return shared_task(
            name=name, ignore_result=True, autoretry_for=(JobFailed,), **RETRY_OPTIONS
        )(task)

    return declare


def enqueue_after_commit(task: Any, **kwargs: Any) -> None:
    """Send ``task`` with ``kwargs`` once the current transaction commits (never on a rollback).
    A broker that cannot take it (down, unreachable) is logged with the task's name and the
    exception's type only, and the request goes on: the work's rows are committed, and the
    periodic job that sweeps them does it on its next run."""
    transaction.on_commit(functools.partial(_enqueue, task, kwargs))


def _enqueue(task: Any, kwargs: dict[str, Any]) -> None:
    try:
        task.apply_async(kwargs=kwargs, retry=False)
    except Exception as exc:  # noqa: BLE001 - never fail the committed change; the sweep runs
        logger.warning("task %s not enqueued: %s", task.name, type(exc).__name__)
