"""Plain emails to people: sent after the change they tell of has committed, never failing it.

A lost email is logged (its kind only, no address or content) rather than raised: the change it
reports has already committed. Messages carry no health information.
"""

from __future__ import annotations

import logging
import uuid
from functools import partial

from django.core.mail import send_mail
from django.db import transaction

from api.models import User

logger = logging.getLogger(__name__)


def mail_send(*, to: str, subject: str, body: str) -> None:
    try:
        send_mail(subject, body, None, [to])
    except Exception as exc:  # noqa: BLE001 - a lost email must not fail a committed change
        logger.error("email delivery failed: %s", type(exc).__name__)


def mail_send_on_commit(*, to: str, subject: str, body: str) -> None:
    transaction.on_commit(partial(mail_send, to=to, subject=subject, body=body))


def mail_user(*, user_id: uuid.UUID, subject: str, body: str) -> None:
    """Send now to the user's current address (nothing when the account has none)."""
    email = User.objects.filter(pk=user_id).values_list("email", flat=True).first()
    if email:
        mail_send(to=email, subject=subject, body=body)
