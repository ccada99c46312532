"""Messaging's jobs (api/jobs.py): new-message notifications every minute, the records policy
(retention) and the sweep of attachment files no row names every day."""

from __future__ import annotations

from django.utils import timezone

from api.jobs import periodic_job
from messaging.notifications import message_notifications_send
from messaging.orphans import attachment_orphans_delete
from messaging.retention import messages_erase_all_expired


@periodic_job("send_message_notifications")
def send_message_notifications() -> int:
    """Email participants that messages wait (as ``manage.py send_message_notifications``)."""
    return message_notifications_send(now=timezone.now())


@periodic_job("messaging_retention")
def messaging_retention() -> int:
    """Erase messages past the records policy (as ``manage.py messaging_retention``)."""
    return messages_erase_all_expired(now=timezone.now())


@periodic_job("messaging_orphan_files")
def messaging_orphan_files() -> int:
    """Delete attachment files no row names (as ``manage.py messaging_orphan_files``)."""
    return attachment_orphans_delete(now=timezone.now())
