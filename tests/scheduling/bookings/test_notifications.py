"""Booking emails: sent after commit to both participants with the .ics (METHOD:REQUEST, or
METHOD:CANCEL), subjects without PHI, nothing for a refused change; reminders 24 h and 1 h
before, each sent once however often (or however concurrently) the sender runs."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import icalendar
import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.core.management import call_command

from scheduling import services as scheduling_services
from scheduling.bookings import services
from scheduling.bookings.errors import SlotUnavailable
from scheduling.bookings.notifications import (
    SUBJECTS,
    notifications_deliver,
    reminders_enqueue,
)
from scheduling.models import BookingNotification, NotificationKind
from scheduling.tasks import deliver_booking_emails
from tests.concurrency import run_at_once
from tests.factories import make_user
from tests.scheduling.bookings.conftest import NOW, book, open_starts, session_type_of
from tests.scheduling.conftest import make_therapist

pytestmark = pytest.mark.django_db


def _calendar(message) -> icalendar.Calendar:
    [(name, content, mimetype)] = message.attachments
    assert name == "session.ics" and mimetype.startswith("text/calendar; method=")
    return icalendar.Calendar.from_ical(content)


def _by_recipient(messages):
    return {m.to[0]: m for m in messages}


def test_booking_confirming_moving_and_cancelling_each_email_both_with_the_ics(
    profile, therapist, client_user, slot, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        booking = book(client_user, profile, slot)
    sent = _by_recipient(mail.outbox)
    assert set(sent) == {client_user.email, therapist.email}
    assert {m.subject for m in mail.outbox} == {"Telehealth: session booked"}
    to_client = _calendar(sent[client_user.email])
    assert to_client["METHOD"] == "REQUEST"
    [event] = to_client.walk("VEVENT")
    assert str(event["UID"]).startswith(str(booking.pk))
    assert (event["SEQUENCE"], event["DTSTART"].dt) == (0, slot)
    assert str(event["SUMMARY"]) == f"Session with {profile.display_name}"
    [for_therapist] = _calendar(sent[therapist.email]).walk("VEVENT")
    assert client_user.full_name not in str(for_therapist["SUMMARY"])  # initials at most
    assert "held until" in sent[client_user.email].body

    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.booking_confirm(booking_id=booking.pk, now=NOW)
    assert {m.subject for m in mail.outbox} == {"Telehealth: session confirmed"}
    [event] = _calendar(mail.outbox[0]).walk("VEVENT")
    assert event["SEQUENCE"] == 1

    mail.outbox.clear()
    new_start = slot + timedelta(days=1)
    with django_capture_on_commit_callbacks(execute=True):
        services.booking_reschedule(booking_id=booking.pk, by=client_user, start=new_start, now=NOW)
    assert {m.subject for m in mail.outbox} == {"Telehealth: session moved"}
    [event] = _calendar(mail.outbox[0]).walk("VEVENT")
    assert (event["SEQUENCE"], event["DTSTART"].dt) == (2, new_start)

    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.booking_cancel(booking_id=booking.pk, by=therapist, reason="other", now=NOW)
    assert {m.subject for m in mail.outbox} == {"Telehealth: session cancelled"}
    calendar = _calendar(mail.outbox[0])
    [event] = calendar.walk("VEVENT")
    assert (calendar["METHOD"], event["STATUS"], event["SEQUENCE"]) == ("CANCEL", "CANCELLED", 3)
    assert not BookingNotification.objects.filter(sent_at__isnull=True).exists()


def test_subjects_never_carry_phi(
    profile, therapist, client_user, slot, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        booking = book(client_user, profile, slot)
        services.booking_cancel(booking_id=booking.pk, by=client_user, reason="other", now=NOW)
    secrets = [
        client_user.full_name,
        client_user.email,
        therapist.full_name,
        profile.display_name,
        session_type_of(profile).name,
        slot.strftime("%H:%M"),
    ]
    subjects = [m.subject for m in mail.outbox] + list(SUBJECTS.values())
    assert not [s for s in subjects for secret in secrets if secret.lower() in s.lower()]


def test_a_refused_change_sends_nothing(
    profile, client_user, outsider, slot, django_capture_on_commit_callbacks
):
    book(outsider, profile, slot)
    BookingNotification.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(SlotUnavailable):
        book(client_user, profile, slot)
    assert not BookingNotification.objects.exists() and not mail.outbox


def _confirmed(client, profile, start):
    booking = book(client, profile, start)
    services.booking_confirm(booking_id=booking.pk, now=NOW)
    BookingNotification.objects.all().update(sent_at=NOW)  # the announcements went out
    return booking


def _run_sender(now):
    reminders_enqueue(now=now)
    return notifications_deliver(now=now)


def test_reminders_24_h_and_1_h_before_are_sent_once_each(profile, client_user, therapist, slot):
    _confirmed(client_user, profile, slot)
    assert _run_sender(slot - timedelta(hours=25)).sent == 0
    assert _run_sender(slot - timedelta(hours=23)).sent == 2
    assert _run_sender(slot - timedelta(hours=23)).sent == 0  # run twice
    assert _run_sender(slot - timedelta(hours=2)).sent == 0
    assert _run_sender(slot - timedelta(minutes=50)).sent == 2
    assert _run_sender(slot - timedelta(minutes=49)).sent == 0
    assert _run_sender(slot + timedelta(minutes=1)).sent == 0
    subjects = sorted((m.to[0], m.subject) for m in mail.outbox)
    assert subjects == sorted(
        [
            (client_user.email, SUBJECTS[NotificationKind.REMINDER_24H]),
            (therapist.email, SUBJECTS[NotificationKind.REMINDER_24H]),
            (client_user.email, SUBJECTS[NotificationKind.REMINDER_1H]),
            (therapist.email, SUBJECTS[NotificationKind.REMINDER_1H]),
        ]
    )
    assert all(not m.attachments for m in mail.outbox)


def test_the_reminder_leads_come_from_settings(settings, profile, client_user, slot):
    settings.BOOKING_REMINDER_FIRST_SECONDS = 600
    settings.BOOKING_REMINDER_LAST_SECONDS = 120
    _confirmed(client_user, profile, slot)
    assert _run_sender(slot - timedelta(minutes=11)).sent == 0
    assert _run_sender(slot - timedelta(minutes=9)).sent == 2
    assert _run_sender(slot - timedelta(minutes=3)).sent == 0
    assert _run_sender(slot - timedelta(minutes=1)).sent == 2
    assert sorted({m.subject for m in mail.outbox}) == sorted(
        {SUBJECTS[NotificationKind.REMINDER_24H], SUBJECTS[NotificationKind.REMINDER_1H]}
    )


def test_the_emails_task_run_again_sends_nothing_more(
    profile, client_user, slot, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        booking = book(client_user, profile, slot)
    assert len(mail.outbox) == 2
    deliver_booking_emails.apply(
        kwargs={"booking_ids": [str(booking.pk)], "now": NOW.isoformat()}, throw=True
    )
    assert len(mail.outbox) == 2
    assert not BookingNotification.objects.filter(sent_at__isnull=True).exists()


def test_a_moved_session_drops_the_old_reminder_and_gets_new_ones(profile, client_user, slot):
    booking = _confirmed(client_user, profile, slot)
    reminders_enqueue(now=slot - timedelta(minutes=30))  # queued, not yet delivered
    new_start = slot + timedelta(days=3)
    services.booking_reschedule(
        booking_id=booking.pk, by=client_user, start=new_start, now=NOW + timedelta(hours=1)
    )
    BookingNotification.objects.filter(kind=NotificationKind.RESCHEDULED).update(sent_at=NOW)
    report = notifications_deliver(now=slot - timedelta(minutes=30))
    assert (report.sent, report.dropped) == (0, 2)
    assert _run_sender(new_start - timedelta(hours=20)).sent == 2


def test_no_24_h_reminder_for_a_session_booked_inside_that_window(profile, client_user, slot):
    scheduling_services.therapist_profile_update(
        profile=profile, fields={"min_notice_minutes": 60}, now=NOW
    )
    booked_at = slot - timedelta(hours=20)
    booking = book(client_user, profile, slot, now=booked_at)
    services.booking_confirm(booking_id=booking.pk, now=booked_at)
    BookingNotification.objects.all().update(sent_at=booked_at)  # the confirmation went out
    assert _run_sender(slot - timedelta(hours=19)).sent == 0
    assert _run_sender(slot - timedelta(minutes=50)).sent == 2


class FailingBackend(EmailBackend):
    def send_messages(self, messages):
        raise OSError("smtp down")


def test_a_failed_send_is_retried_after_its_lease_and_sent_once(
    profile, client_user, slot, settings
):
    _confirmed(client_user, profile, slot)
    now = slot - timedelta(hours=23)
    settings.EMAIL_BACKEND = f"{__name__}.FailingBackend"
    assert _run_sender(now).failed == 2
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert _run_sender(now + timedelta(minutes=1)).sent == 0  # still claimed by the failed run
    assert _run_sender(now + timedelta(minutes=5)).sent == 2
    assert _run_sender(now + timedelta(minutes=10)).sent == 0
    assert len(mail.outbox) == 2


def test_the_command_runs_on_the_real_clock():
    out = StringIO()
    call_command("send_reminders", stdout=out)
    assert out.getvalue() == "send_reminders: 0 reminders due, 0 sent, 0 dropped, 0 failed\n"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_senders_running_at_once_on_many_connections_send_each_reminder_once():
    profile = make_therapist()
    starts = open_starts(profile, days=2)[::2][:5]
    for start in starts:
        _confirmed(make_user(), profile, start)
    now = starts[-1] - timedelta(hours=23)
    mail.outbox.clear()  # the announcements (sent after each commit here)
    results = run_at_once(lambda _: _run_sender(now), 8)
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert len(mail.outbox) == 2 * len(starts)
    rows = BookingNotification.objects.filter(kind=NotificationKind.REMINDER_24H)
    assert rows.count() == len(mail.outbox)
    assert set(rows.values_list("attempts", flat=True)) == {1}
    assert not rows.filter(sent_at__isnull=True).exists()


def test_invitations_name_their_organizer_and_attendee_and_one_charset(
    settings, profile, therapist, client_user, slot, django_capture_on_commit_callbacks
):
    """RFC 5546: a REQUEST or CANCEL has an ORGANIZER and the recipient as ATTENDEE (Outlook
    and Gmail match invitations by them); the attachment's Content-Type has one charset."""
    settings.DEFAULT_FROM_EMAIL = "no-reply@telehealth.test"
    with django_capture_on_commit_callbacks(execute=True):
        booking = book(client_user, profile, slot)
    for message in mail.outbox:
        [event] = _calendar(message).walk("VEVENT")
        assert str(event["ORGANIZER"]) == "mailto:no-reply@telehealth.test"
        assert str(event["ATTENDEE"]) == f"mailto:{message.to[0]}"
        assert event["ATTENDEE"].params["PARTSTAT"] == "ACCEPTED"
        [part] = [p for p in message.message().walk() if p.get_filename() == "session.ics"]
        assert part["Content-Type"].lower().count("charset") == 1
        assert part.get_param("method") == "REQUEST"
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.booking_cancel(booking_id=booking.pk, by=therapist, reason="other", now=NOW)
    [event] = _calendar(mail.outbox[0]).walk("VEVENT")
    assert event["ATTENDEE"].params["PARTSTAT"] == "DECLINED"
