"""Messaging's jobs (api/jobs.py): new-message notifications every minute."""

from __future__ import annotations

from django.utils import timezone

from api.jobs import periodic_job
from messaging.notifications import message_notifications_send


@periodic_job("send_message_notifications")
def send_message_notifications() -> int:
    """Email participants that messages wait (as ``manage.py send_message_notifications``)."""
    return message_notifications_send(now=timezone.now())
