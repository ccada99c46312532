"""Booking emails through Django's email backend: an outbox, delivered after commit.

``notify`` writes one ``BookingNotification`` row per participant in the caller's transaction
(a rolled-back change announces nothing) and, with ``BOOKING_EMAILS_AFTER_COMMIT``, enqueues
their delivery once the commit is done (the ``deliver_booking_emails`` task, run by a Celery
worker); ``manage.py send_reminders`` queues the 24 h and 1 h reminders and
delivers whatever is still unsent (a crashed or failed delivery is retried when its claim's
lease runs out). Each row is unique per (booking, recipient, kind, dedupe key), and a sender
claims rows with one conditional update, so running the sender twice, or on two machines at
once, sends every message once.

Subjects never carry PHI (no names, no session type, no time); bodies give the time and point to
the app. Booking changes carry the ``.ics`` (``METHOD:REQUEST``, or ``METHOD:CANCEL`` for a
cancellation) with the booking's UID and SEQUENCE, so calendar apps update the one event.
"""

from __future__ import annotations

import logging
import smtplib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db.models import F, Q

from api.compiled import insert_rows
from api.jobs import enqueue_after_commit
from api.services.outbox import outbox_claim, outbox_drain
from scheduling import ics
from scheduling.models import Booking, BookingNotification, BookingStatus, NotificationKind
from scheduling.services.feeds import FEED_REFRESH, feed_event

logger = logging.getLogger(__name__)

SUBJECTS = {
    NotificationKind.BOOKED: "Telehealth: session booked",
    NotificationKind.CONFIRMED: "Telehealth: session confirmed",
    NotificationKind.CANCELLED: "Telehealth: session cancelled",
    NotificationKind.RESCHEDULED: "Telehealth: session moved",
    NotificationKind.REMINDER_24H: "Telehealth: reminder of your session tomorrow",
    NotificationKind.REMINDER_1H: "Telehealth: reminder of your session in an hour",
}
_SENTENCES = {
    NotificationKind.BOOKED: "A session was booked for {when}.",
    NotificationKind.CONFIRMED: "The session on {when} is confirmed.",
    NotificationKind.CANCELLED: "The session on {when} was cancelled.",
    NotificationKind.RESCHEDULED: "The session was moved to {when}.",
    NotificationKind.REMINDER_24H: "Reminder: a session starts on {when}.",
    NotificationKind.REMINDER_1H: "Reminder: a session starts at {when}.",
}
_HELD = "It is held until {until} while the payment completes."
_FOOTER = "Open the Telehealth app for the details."
REMINDER_KINDS = frozenset({NotificationKind.REMINDER_24H, NotificationKind.REMINDER_1H})
SERIES_KEY_PREFIX = "series:"


def notification_rows(
    bookings: Iterable[Booking], *, kind: str, now: datetime, dedupe_key: str | None = None
) -> list[BookingNotification]:
    """The ``kind`` emails to both participants of each booking, unsaved (``notify`` inserts
    them; a new booking's go in its own INSERT, ``create.booking_insert``). ``dedupe_key``
    defaults to the booking's current ICS sequence."""
    return [
        BookingNotification(
            booking=b,
            recipient_id=recipient,
            kind=kind,
            dedupe_key=dedupe_key or f"seq:{b.sequence}",
            created_at=now,
        )
        for b in bookings
        for recipient in (b.client_id, b.therapist.user_id)
    ]


def notify(
    *,
    bookings: Iterable[Booking],
    kind: str,
    now: datetime,
    dedupe_key: str | None = None,
) -> None:
    """Queue ``kind`` emails to both participants of each booking (in the caller's transaction).

    ``dedupe_key`` defaults to the booking's current ICS sequence; the series announcement uses
    ``series:<id>`` on the series' first booking and lists every occurrence in its ``.ics``.
    """
    bookings = list(bookings)
    if not bookings:
        return
    rows = notification_rows(bookings, kind=kind, now=now, dedupe_key=dedupe_key)
    insert_rows(rows, ignore_conflicts=True)
    deliver_after_commit(bookings, now=now)


def deliver_after_commit(bookings: list[Booking], *, now: datetime) -> None:
    """With ``BOOKING_EMAILS_AFTER_COMMIT``, send the bookings' queued emails as soon as the
    caller's transaction commits (a Celery task); else the job sends them at its next run."""
    if settings.BOOKING_EMAILS_AFTER_COMMIT:
        from scheduling.tasks import deliver_booking_emails  # the task module imports this one

        enqueue_after_commit(
            deliver_booking_emails,
            booking_ids=[str(b.pk) for b in bookings],
            now=now.isoformat(),
        )


def reminders_enqueue(*, now: datetime) -> int:
    """Queue the reminders that are due (idempotent: a queued reminder is not queued again).

    A reminder is due when the confirmed session starts within its lead time and after the next
    reminder's; one whose booking was last changed (made, confirmed, moved) inside its lead time
    is skipped, since that change's email just went out. A moved session gets its reminders
    again (the key is the start)."""
    rows: list[BookingNotification] = []
    for kind, lead, until in _reminders():
        due = Booking.objects.filter(
            status=BookingStatus.CONFIRMED,
            start__gt=now + until,
            start__lte=now + lead,
            updated_at__lte=F("start") - lead,
        ).select_related("therapist")
        for booking in due:
            rows += notification_rows(
                [booking], kind=kind, now=now, dedupe_key=booking.start.astimezone(UTC).isoformat()
            )
    BookingNotification.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)
    return len(rows)


def _reminders() -> tuple[tuple[str, timedelta, timedelta], ...]:
    """The reminders: (kind, how long before the start, and when the next, closer one takes
    over); 24 hours and 1 hour unless settings shorten them."""
    first = timedelta(seconds=settings.BOOKING_REMINDER_FIRST_SECONDS)
    last = timedelta(seconds=settings.BOOKING_REMINDER_LAST_SECONDS)
    return (
        (NotificationKind.REMINDER_24H, first, last),
        (NotificationKind.REMINDER_1H, last, timedelta(0)),
    )


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    sent: int
    dropped: int
    failed: int


def reminders_send(*, now: datetime) -> dict[str, int]:
    """The ``send_reminders`` job: queue the reminders that are due, then send every unsent
    booking email (each row claimed by one sender first); counts of due, sent, dropped, failed."""
    due = reminders_enqueue(now=now)
    done = outbox_drain(lambda limit: notifications_deliver(now=now, limit=limit))
    return {"due": due, **done}


def notifications_claim(
    *, now: datetime, booking_ids: list[uuid.UUID] | None = None, limit: int = 500
) -> list[BookingNotification]:
    """Claim unsent rows (``outbox_claim``: right after a change, that change's few rows; else
    the sender's batch, oldest first) and return the ones this caller won."""
    scope = Q(booking_id__in=booking_ids) if booking_ids is not None else None
    won = outbox_claim(
        BookingNotification, unsent=Q(sent_at__isnull=True), now=now, scope=scope, limit=limit
    )
    if won is None:
        return []
    return list(
        BookingNotification.objects.filter(won)
        .select_related("booking__therapist", "booking__client", "recipient")
        .order_by("id")
    )


def notifications_deliver(
    *, now: datetime, booking_ids: list[uuid.UUID] | None = None, limit: int = 500
) -> DeliveryReport:
    """Send the claimed rows; stale ones (the session started, or a reminder for a start or a
    status that no longer holds) are dropped. A failed send stays claimed until its lease runs
    out and is tried again by the next run."""
    rows = notifications_claim(now=now, booking_ids=booking_ids, limit=limit)
    done: list[int] = []
    sent = dropped = failed = 0
    connection = get_connection()
    for row in rows:
        if _stale(row, now):
            done.append(row.pk)
            dropped += 1
            continue
        try:
            _message(row, connection=connection).send()
        except (OSError, smtplib.SMTPException) as exc:
            failed += 1
            logger.warning("booking email %s not sent: %s", row.pk, type(exc).__name__)
            continue
        done.append(row.pk)
        sent += 1
    if done:
        BookingNotification.objects.filter(pk__in=done).update(sent_at=now, claimed_until=None)
    return DeliveryReport(sent=sent, dropped=dropped, failed=failed)


def _stale(row: BookingNotification, now: datetime) -> bool:
    booking = row.booking
    if booking.start <= now:
        return True
    if row.kind in REMINDER_KINDS:
        return (
            booking.status != BookingStatus.CONFIRMED
            or row.dedupe_key != booking.start.astimezone(UTC).isoformat()
        )
    return False


def _when(moment: datetime, zone: ZoneInfo) -> str:
    local = moment.astimezone(zone)
    utc = moment.astimezone(UTC)
    return f"{local:%A %d %B %Y, %H:%M} ({zone.key}, UTC{local:%z}) - {utc:%Y-%m-%d %H:%M} UTC"


def _message(row: BookingNotification, *, connection: object) -> EmailMessage:
    booking = row.booking
    zone = ZoneInfo(booking.therapist.time_zone)
    lines = [_SENTENCES[NotificationKind(row.kind)].format(when=_when(booking.start, zone))]
    if booking.status == BookingStatus.HELD and booking.hold_expires_at is not None:
        lines.append(_HELD.format(until=f"{booking.hold_expires_at.astimezone(UTC):%H:%M} UTC"))
    lines.append(_FOOTER)
    message = EmailMessage(
        subject=SUBJECTS[NotificationKind(row.kind)],
        body="\n\n".join(lines) + "\n",
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[row.recipient.email],
        connection=connection,
    )
    if row.kind not in REMINDER_KINDS:
        method = "CANCEL" if row.kind == NotificationKind.CANCELLED else "REQUEST"
        # Django adds the charset of a text attachment itself (given here too, it was repeated).
        message.attach(
            "session.ics", _invitation(row, method=method), f"text/calendar; method={method}"
        )
    return message


def _invitation(row: BookingNotification, *, method: str) -> bytes:
    booking = row.booking
    for_therapist = row.recipient_id != booking.client_id
    bookings = [booking]
    if row.dedupe_key.startswith(SERIES_KEY_PREFIX) and booking.series_id is not None:
        bookings = list(
            Booking.objects.filter(series_id=booking.series_id)
            .select_related("therapist", "client")
            .order_by("start")
        )
    events = [feed_event(b, for_therapist=for_therapist) for b in bookings]
    return ics.render_calendar(
        events,
        name="Telehealth session",
        method=method,
        refresh=FEED_REFRESH,
        invitation=ics.Invitation(
            organizer=str(settings.DEFAULT_FROM_EMAIL), attendee=row.recipient.email
        ),
    )
