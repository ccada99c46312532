"""Identity's periodic jobs (api/jobs.py): queued plain emails."""

from __future__ import annotations

from django.utils import timezone

from api.jobs import periodic_job
from api.services.mail import emails_send_queued


@periodic_job("send_emails")
def send_emails() -> dict[str, int]:
    """Send the queued emails whose delivery after commit failed (as ``manage.py send_emails``)."""
    return emails_send_queued(now=timezone.now())
