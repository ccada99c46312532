"""Identity's jobs (api/jobs.py): queued plain emails, right after their commit and every minute."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from api.jobs import after_commit_task, periodic_job
from api.services.mail import emails_deliver, emails_send_queued


@after_commit_task("deliver_emails")
def deliver_emails(*, ids: list[int], now: str) -> None:
    """Send the queued emails ``ids`` once their change has committed, at that change's time
    (``now``, ISO 8601). Safe to run twice: a sent email's row is gone, a claimed one skipped."""
    emails_deliver(now=datetime.fromisoformat(now), ids=ids)


@periodic_job("send_emails")
def send_emails() -> dict[str, int]:
    """Send the queued emails whose delivery after commit failed (as ``manage.py send_emails``)."""
    return emails_send_queued(now=timezone.now())
