"""Scheduling's jobs (api/jobs.py): booking emails after commit; reminders, availability,
calendars and holds periodically."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.utils import timezone

from api.jobs import after_commit_task, periodic_job
from scheduling.bookings.notifications import notifications_deliver, reminders_send
from scheduling.bookings.services import holds_expire
from scheduling.services import availability_summaries_refresh, external_calendars_sync_due


@after_commit_task("deliver_booking_emails")
def deliver_booking_emails(*, booking_ids: list[str], now: str) -> None:
    """Send the unsent emails of ``booking_ids`` once the change that queued them has committed,
    at that change's time (``now``, ISO 8601). Safe to run twice: each row is claimed, then
    marked sent; ``send_reminders`` sends whatever this left."""
    notifications_deliver(
        now=datetime.fromisoformat(now), booking_ids=[uuid.UUID(pk) for pk in booking_ids]
    )


@periodic_job("send_reminders")
def send_reminders() -> dict[str, int]:
    """Queue due reminders and send unsent booking emails (as ``manage.py send_reminders``)."""
    return reminders_send(now=timezone.now())


@periodic_job("refresh_availability")
def refresh_availability() -> int:
    """Refresh summaries older than 15 minutes (as ``manage.py refresh_availability``)."""
    return availability_summaries_refresh(now=timezone.now(), max_age=timedelta(minutes=15))


@periodic_job("sync_calendars")
def sync_calendars() -> dict[str, int]:
    """Sync the external calendars that are due (as ``manage.py sync_calendars``)."""
    return external_calendars_sync_due(now=timezone.now())


@periodic_job("expire_holds")
def expire_holds() -> int:
    """Cancel holds whose time ran out (as ``manage.py expire_holds``)."""
    return holds_expire(now=timezone.now())
