"""Plain emails to people, through a durable outbox (``api.models.OutboundEmail``).

``mail_queue`` writes the message in the caller's transaction, so a rolled-back change sends
nothing, and enqueues its delivery (the ``deliver_emails`` task, run by a Celery worker) once
the commit is done. A delivery that fails (the mail server down, the broker down, a crash
half-way) stays queued: ``manage.py send_emails``, run every minute, tries it again once its
claim's lease has run out, until ``EMAIL_GIVE_UP_HOURS`` after it was queued; then it is logged
as an error and removed. So a failing mail server never fails the change, and no email is
dropped silently. Two senders never both send one (``api.services.outbox``).

Messages carry no health information; the body is encrypted at rest all the same (it can hold a
password-reset code), bound to its recipient. Logs name the row and the exception's type, never
an address or any content.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db.models import Q

from api import crypto
from api.jobs import enqueue_after_commit
from api.models import OutboundEmail, User
from api.services.outbox import outbox_claim, outbox_drain

logger = logging.getLogger(__name__)


def _bound_to(to: str) -> bytes:
    return f"api.outbound_email:{to}".encode()


def mail_queue(*, to: str, subject: str, body: str, now: datetime) -> None:
    """Queue an email in the caller's transaction; a worker sends it once the commit is done."""
    row = OutboundEmail.objects.create(
        to=to,
        subject=subject,
        body=crypto.encrypt(body, associated_data=_bound_to(to)),
        created_at=now,
    )
    from api.tasks import deliver_emails  # the task module imports this one

    enqueue_after_commit(deliver_emails, ids=[row.pk], now=now.isoformat())


def mail_queue_to_user(*, user_id: uuid.UUID, subject: str, body: str, now: datetime) -> None:
    """``mail_queue`` to the user's current address (nothing when the account has none)."""
    email = User.objects.filter(pk=user_id).values_list("email", flat=True).first()
    if email:
        mail_queue(to=email, subject=subject, body=body, now=now)


@dataclass(frozen=True, slots=True)
class EmailDeliveryReport:
    sent: int
    failed: int  # kept for the next run
    given_up: int  # failing since EMAIL_GIVE_UP_HOURS: logged and removed


def emails_deliver(
    *, now: datetime, ids: list[int] | None = None, limit: int = 500
) -> EmailDeliveryReport:
    """Send the queued emails ``ids`` (right after their commit), or the oldest ``limit``."""
    won = outbox_claim(
        OutboundEmail,
        unsent=Q(),  # a sent row is deleted
        now=now,
        scope=Q(pk__in=ids) if ids is not None else None,
        limit=limit,
    )
    if won is None:
        return EmailDeliveryReport(sent=0, failed=0, given_up=0)
    sent: list[int] = []
    failed: dict[str, list[int]] = {}
    give_up_before = now - timedelta(hours=settings.EMAIL_GIVE_UP_HOURS)
    given_up: list[int] = []
    connection = get_connection()
    for row in OutboundEmail.objects.filter(won).order_by("pk"):
        try:
            EmailMessage(
                subject=row.subject,
                body=crypto.decrypt(row.body, associated_data=_bound_to(row.to)),
                from_email=settings.DEFAULT_FROM_EMAIL,
                to=[row.to],
                connection=connection,
            ).send()
        except Exception as exc:  # noqa: BLE001 - any failure leaves the email for the next run
            error = type(exc).__name__
            if row.created_at <= give_up_before:
                logger.error("email %s given up after %s attempts: %s", row.pk, row.attempts, error)
                given_up.append(row.pk)
            else:
                logger.warning("email %s not sent (attempt %s): %s", row.pk, row.attempts, error)
                failed.setdefault(error[:64], []).append(row.pk)
            continue
        sent.append(row.pk)
    OutboundEmail.objects.filter(pk__in=sent + given_up).delete()
    for error, pks in failed.items():
        OutboundEmail.objects.filter(pk__in=pks).update(last_error=error)
    return EmailDeliveryReport(
        sent=len(sent), failed=sum(len(pks) for pks in failed.values()), given_up=len(given_up)
    )


def emails_send_queued(*, now: datetime) -> dict[str, int]:
    """The ``send_emails`` job: send every queued email (each claimed by one sender first, so
    two runs at once send each email once); counts of sent, failed and given up."""
    return outbox_drain(lambda limit: emails_deliver(now=now, limit=limit))
