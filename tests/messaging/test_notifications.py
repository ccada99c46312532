"""MSG-05: an offline participant is emailed that messages wait, with no text and no names;
ten messages make one email; never in quiet hours; someone who read them is not told; a run
twice sends nothing twice."""

from __future__ import annotations

import uuid
from datetime import time, timedelta

import pytest
from django.core import mail
from django.core.management import call_command

from messaging import services
from messaging.models import MessagingProfile
from messaging.notifications import message_notifications_send

pytestmark = pytest.mark.django_db

SECRET = "I stopped taking my medication."
pushed: list[dict[str, object]] = []


def push_hook(**event: object) -> None:
    pushed.append(event)


@pytest.fixture(autouse=True)
def _hooks(settings):
    settings.MESSAGING_PUSH_HOOK = "tests.messaging.test_notifications.push_hook"
    settings.MESSAGING_NOTIFY_DELAY_SECONDS = 300
    pushed.clear()


def _send(conversation, sender, now, body=SECRET):
    services.message_send(
        conversation_id=conversation.pk,
        sender=sender,
        body=body,
        client_message_id=uuid.uuid4(),
        now=now,
    )


def _run(now):
    return message_notifications_send(now=now)


def test_msg_05_ten_messages_make_one_email_without_content_or_names(
    conversation, client_user, therapist, fixed_clock, django_capture_on_commit_callbacks
):
    for i in range(10):
        _send(conversation, client_user, fixed_clock + timedelta(seconds=i), f"{SECRET} {i}")
    with django_capture_on_commit_callbacks(execute=True):
        assert _run(fixed_clock + timedelta(minutes=1)) == 0  # too soon: more may come
        assert _run(fixed_clock + timedelta(minutes=6)) == 1
        assert _run(fixed_clock + timedelta(minutes=7)) == 0  # nothing twice
    [email] = mail.outbox
    assert email.to == [therapist.email]
    text = email.subject + email.body
    for leak in (
        SECRET,
        "medication",
        client_user.full_name,
        therapist.full_name,
        client_user.email,
    ):
        assert leak not in text
    assert str(conversation.pk) not in text
    assert pushed == [{"user_id": therapist.pk, "kind": "new_message"}]


def test_msg_05_someone_who_read_them_is_not_told_and_a_new_message_is_told_again(
    conversation, client_user, therapist, fixed_clock, django_capture_on_commit_callbacks
):
    _send(conversation, client_user, fixed_clock)
    services.conversation_mark_read(
        conversation_id=conversation.pk, reader=therapist, up_to_seq=1, now=fixed_clock
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert _run(fixed_clock + timedelta(minutes=10)) == 0
        _send(conversation, therapist, fixed_clock + timedelta(minutes=11), "See you Tuesday")
        assert _run(fixed_clock + timedelta(minutes=20)) == 1
    assert [m.to for m in mail.outbox] == [[client_user.email]]


def test_msg_05_quiet_hours_hold_the_email_until_they_end(
    conversation, client_user, therapist, fixed_clock, django_capture_on_commit_callbacks
):
    # fixed_clock is 14:20 UTC: quiet 14:00-15:00 in UTC holds it, 15:00 sends it.
    MessagingProfile.objects.create(
        user=therapist,
        time_zone="UTC",
        quiet_start=time(14, 0),
        quiet_end=time(15, 0),
        updated_at=fixed_clock,
    )
    _send(conversation, client_user, fixed_clock)
    with django_capture_on_commit_callbacks(execute=True):
        assert _run(fixed_clock + timedelta(minutes=30)) == 0
        assert _run(fixed_clock + timedelta(minutes=41)) == 1
    assert len(mail.outbox) == 1


def test_the_command_runs_the_job(conversation, client_user, fixed_clock, capsys):
    _send(conversation, client_user, fixed_clock - timedelta(hours=1))
    call_command("send_message_notifications")
    assert "1 notified" in capsys.readouterr().out
