"""Telling an offline participant that a message waits (MSG-05), batched, in quiet hours never.

``message_notifications_send`` (the ``send_message_notifications`` job, every minute) finds each
participant with messages they have not read, the newest at least ``MESSAGING_NOTIFY_DELAY_
SECONDS`` old and not yet notified, outside their quiet hours; each gets one email (and one call
of the push hook), however many messages wait: ten messages make one email. Someone online reads
them first (their receipt moves) and is not told. The email says only that a message waits: no
text, no names, no ids (the same subject and body for everyone). A participant is claimed with
a conditional update of their ``*_notified_seq``, so two workers never both send one, and a job
run twice sends nothing twice.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils.module_loading import import_string

from api.services.mail import mail_queue_to_user
from messaging.hours import within_quiet_hours
from messaging.models import Conversation, MessagingProfile

logger = logging.getLogger(__name__)

SUBJECT = "You have a new secure message"
BODY = (
    "A new message is waiting for you in your secure inbox.\n\n"
    "Sign in to the app to read it. For your privacy this email does not include the message "
    "or who sent it.\n"
)


def _push(user_id: uuid.UUID) -> None:
    """The mobile push hook (``MESSAGING_PUSH_HOOK``, a dotted path): called with the user's
    id and the kind of event only, never content."""
    if settings.MESSAGING_PUSH_HOOK:
        import_string(settings.MESSAGING_PUSH_HOOK)(user_id=user_id, kind="new_message")


def _quiet(user_id: uuid.UUID, profiles: dict[uuid.UUID, MessagingProfile], now: datetime) -> bool:
    profile = profiles.get(user_id)
    return profile is not None and within_quiet_hours(
        start=profile.quiet_start, end=profile.quiet_end, time_zone=profile.time_zone, now=now
    )


def message_notifications_send(*, now: datetime, limit: int = 500) -> int:
    """Notify every participant with unread, unnotified messages old enough; returns how many
    were notified."""
    settled = now - timedelta(seconds=settings.MESSAGING_NOTIFY_DELAY_SECONDS)
    due = Conversation.objects.filter(activity_at__lte=settled).filter(
        Q(client_read_seq__lt=F("last_seq"), client_notified_seq__lt=F("last_seq"))
        | Q(therapist_read_seq__lt=F("last_seq"), therapist_notified_seq__lt=F("last_seq"))
    )
    rows = list(
        due.values_list(
            "pk",
            "client_id",
            "therapist_id",
            "last_seq",
            "client_read_seq",
            "client_notified_seq",
            "therapist_read_seq",
            "therapist_notified_seq",
        )[:limit]
    )
    people = {r[1] for r in rows} | {r[2] for r in rows}
    profiles = {p.user_id: p for p in MessagingProfile.objects.filter(user_id__in=people)}
    sent = 0
    for pk, client_id, therapist_id, last, c_read, c_told, t_read, t_told in rows:
        for user_id, read, told, field in (
            (client_id, c_read, c_told, "client_notified_seq"),
            (therapist_id, t_read, t_told, "therapist_notified_seq"),
        ):
            if read >= last or told >= last or _quiet(user_id, profiles, now):
                continue
            with transaction.atomic():
                claimed = Conversation.objects.filter(pk=pk, **{field: told}).update(
                    **{field: last}
                )
                if not claimed:
                    continue  # another run took it
                mail_queue_to_user(user_id=user_id, subject=SUBJECT, body=BODY, now=now)
            _push(user_id)
            sent += 1
    if sent:
        logger.info("messaging: %s new-message notifications sent", sent)
    return sent
