"""Plain emails (``api.services.mail``): an outbox row in the change's transaction, sent right
after the commit, retried by ``manage.py send_emails`` until it goes out or is given up (logged),
and sent once however many senders run."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

from api import crypto
from api.models import OutboundEmail
from api.services.mail import emails_deliver, mail_queue, mail_queue_to_user
from api.services.outbox import CLAIM_LEASE
from tests.concurrency import run_at_once

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
RESET_CODE = "uid: MTIz token: c3a-5f1e9b2d"


class FailingBackend(EmailBackend):
    def send_messages(self, messages):
        raise OSError("smtp down")


@pytest.fixture
def smtp_down(settings):
    settings.EMAIL_BACKEND = f"{__name__}.FailingBackend"


def _queue(to: str = "someone@example.test", body: str = "Hello.") -> None:
    mail_queue(to=to, subject="Telehealth: a notice", body=body, now=NOW)


def test_an_email_is_sent_right_after_the_commit_and_leaves_no_row(
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        _queue()
        assert mail.outbox == []  # not before the commit
    assert [(m.to, m.subject, m.body) for m in mail.outbox] == [
        (["someone@example.test"], "Telehealth: a notice", "Hello.")
    ]
    assert OutboundEmail.objects.count() == 0


def test_a_rolled_back_change_sends_nothing(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            _queue()
            raise RuntimeError("the change failed")
    assert callbacks == []
    assert mail.outbox == []
    assert OutboundEmail.objects.count() == 0


def test_the_body_is_encrypted_at_rest_and_bound_to_its_recipient():
    _queue(body=f"Your code: {RESET_CODE}")  # the commit never comes: the row stays queued
    with connection.cursor() as cursor:
        cursor.execute("SELECT body FROM api_outboundemail")
        (raw,) = cursor.fetchone()
    assert RESET_CODE not in raw
    assert raw.startswith("v1:")
    with pytest.raises(crypto.DecryptionError):  # moved onto another address's row
        crypto.decrypt(raw, associated_data=b"api.outbound_email:other@example.test")


def test_a_failed_delivery_is_kept_and_sent_once_by_the_job_after_its_lease(
    smtp_down, settings, django_capture_on_commit_callbacks, caplog
):
    with caplog.at_level(logging.WARNING, logger="api.services.mail"):
        with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
            _queue(body=f"Your code: {RESET_CODE}")
    row = OutboundEmail.objects.get()
    assert (row.attempts, row.last_error) == (1, "OSError")
    assert "someone@example.test" not in caplog.text
    assert RESET_CODE not in caplog.text

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert emails_deliver(now=NOW + timedelta(minutes=1)).sent == 0  # still claimed
    report = emails_deliver(now=NOW + CLAIM_LEASE)
    assert (report.sent, report.failed, report.given_up) == (1, 0, 0)
    assert [m.body for m in mail.outbox] == [f"Your code: {RESET_CODE}"]
    assert emails_deliver(now=NOW + 2 * CLAIM_LEASE).sent == 0
    assert len(mail.outbox) == 1
    assert OutboundEmail.objects.count() == 0


def test_an_email_failing_for_the_give_up_period_is_logged_and_removed(smtp_down, settings, caplog):
    settings.EMAIL_GIVE_UP_HOURS = 24
    _queue()
    assert emails_deliver(now=NOW + timedelta(hours=23, minutes=55)).failed == 1
    with caplog.at_level(logging.ERROR, logger="api.services.mail"):
        report = emails_deliver(now=NOW + timedelta(hours=24))
    assert (report.sent, report.failed, report.given_up) == (0, 0, 1)
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "given up after 2 attempts: OSError" in record.getMessage()
    assert OutboundEmail.objects.count() == 0


def test_to_a_user_uses_their_current_address(client_user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        mail_queue_to_user(user_id=client_user.pk, subject="S", body="B", now=NOW)
    assert [m.to for m in mail.outbox] == [[client_user.email]]


def test_the_command_sends_what_is_queued_and_says_what_it_did(smtp_down, settings):
    for to in ("someone@example.test", "other@example.test"):  # the command runs on the clock
        mail_queue(to=to, subject="S", body="B", now=timezone.now())
    out = StringIO()
    call_command("send_emails", stdout=out)
    assert out.getvalue() == "send_emails: 0 sent, 2 failed, 0 given up\n"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    OutboundEmail.objects.update(claimed_until=None)  # as when the lease has run out
    out = StringIO()
    call_command("send_emails", stdout=out)
    assert out.getvalue() == "send_emails: 2 sent, 0 failed, 0 given up\n"
    assert sorted(m.to[0] for m in mail.outbox) == ["other@example.test", "someone@example.test"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_senders_running_at_once_on_many_connections_send_each_email_once(settings):
    settings.EMAIL_BACKEND = f"{__name__}.FailingBackend"
    addresses = [f"person{n}@example.test" for n in range(20)]
    for to in addresses:
        _queue(to=to)  # its send right after the commit fails: it stays queued
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    later = NOW + CLAIM_LEASE

    def sender(_: int) -> None:
        while OutboundEmail.objects.filter(claimed_until__lte=later).exists():
            emails_deliver(now=later, limit=3)

    assert run_at_once(sender, 8) == [None] * 8
    assert sorted(m.to[0] for m in mail.outbox) == sorted(addresses)
    assert OutboundEmail.objects.count() == 0
