"""Attachment files no row names (messaging/orphans.py): a send that fails after storing its
file removes it at once; one rolled back later (a caller's transaction) leaves it to the sweep,
which deletes it once older than the grace period, keeps a file still in flight, a file a row
names and any file the app did not write, and changes nothing when run again."""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.files.storage import FileSystemStorage
from django.core.management import call_command
from django.db import DatabaseError, transaction

from api.models import User
from messaging import services
from messaging.attachments import file_read, storage
from messaging.models import Attachment, Conversation, Message
from messaging.orphans import attachment_orphans_delete
from tests.messaging.test_attachments import TEXT

pytestmark = pytest.mark.django_db


def _send_with_file(conversation: Conversation, sender: User, now: datetime) -> Message:
    message, _ = services.message_send(
        conversation_id=conversation.pk,
        sender=sender,
        body="see attached",
        client_message_id=uuid.uuid4(),
        file=services.FileIn(name="diary.txt", data=TEXT),
        now=now,
    )
    return message


def _rolled_back_send(conversation: Conversation, sender: User, now: datetime) -> None:
    """A send whose caller's transaction rolls back after the send returned."""
    rows = Attachment.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        _send_with_file(conversation, sender, now)
        raise RuntimeError("the caller fails after the send")
    assert Attachment.objects.count() == rows  # its row went with the rollback; its file stays


def _grace(settings) -> timedelta:
    return timedelta(seconds=settings.MESSAGING_ORPHAN_GRACE_SECONDS)


def test_a_rolled_back_sends_file_is_deleted_once_past_the_grace_period(
    conversation, client_user, fixed_clock, attachments_dir, settings
):
    _rolled_back_send(conversation, client_user, fixed_clock)
    [name] = storage().listdir("")[1]
    written = storage().get_modified_time(name)

    assert attachment_orphans_delete(now=written + _grace(settings) - timedelta(seconds=1)) == 0
    assert [p.name for p in attachments_dir.iterdir()] == [name]  # maybe still in flight

    assert attachment_orphans_delete(now=written + _grace(settings) + timedelta(seconds=1)) == 1
    assert list(attachments_dir.iterdir()) == []


def test_the_grace_period_is_a_setting(
    conversation, client_user, fixed_clock, attachments_dir, settings
):
    _rolled_back_send(conversation, client_user, fixed_clock)
    [name] = storage().listdir("")[1]
    written = storage().get_modified_time(name)
    settings.MESSAGING_ORPHAN_GRACE_SECONDS = 60

    assert attachment_orphans_delete(now=written + timedelta(seconds=61)) == 1
    assert list(attachments_dir.iterdir()) == []


def test_a_file_a_row_names_is_kept_however_old(
    conversation, client_user, fixed_clock, attachments_dir
):
    message = _send_with_file(conversation, client_user, fixed_clock)
    attachment = Attachment.objects.get(message=message)

    assert attachment_orphans_delete(now=fixed_clock + timedelta(days=3650)) == 0
    assert file_read(attachment_id=attachment.pk, storage_name=attachment.storage_name) == TEXT


def test_running_the_sweep_twice_changes_nothing_the_second_time(
    conversation, client_user, fixed_clock, attachments_dir
):
    kept = _send_with_file(conversation, client_user, fixed_clock)
    _rolled_back_send(conversation, client_user, fixed_clock)
    later = fixed_clock + timedelta(days=3650)

    assert attachment_orphans_delete(now=later) == 1
    assert attachment_orphans_delete(now=later) == 0
    [left] = attachments_dir.iterdir()
    assert left.name == Attachment.objects.get(message=kept).storage_name


def test_files_the_app_did_not_write_are_left_alone(fixed_clock, attachments_dir):
    files = storage()
    for name in ("README.txt", f"{uuid.uuid4().hex}.bin.tmp", f"{uuid.uuid4().hex.upper()}.bin"):
        files.save(name, StringIO("not an attachment"))

    assert attachment_orphans_delete(now=fixed_clock + timedelta(days=3650)) == 0
    assert len(list(attachments_dir.iterdir())) == 3


class VanishingStorage(FileSystemStorage):
    """Local files where each listed file is deleted as soon as it is listed, as a sweep or
    the retention job running beside this one would."""

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        directories, files = super().listdir(path)
        for name in files:
            Path(self.path(name)).unlink()
        return directories, files


def test_a_file_deleted_meanwhile_is_skipped(
    conversation, client_user, fixed_clock, attachments_dir, settings
):
    _rolled_back_send(conversation, client_user, fixed_clock)
    settings.MESSAGING_ATTACHMENT_STORAGE = {
        "BACKEND": f"{__name__}.VanishingStorage",
        "OPTIONS": {"location": str(attachments_dir)},
    }

    assert attachment_orphans_delete(now=fixed_clock + timedelta(days=3650)) == 0
    assert list(attachments_dir.iterdir()) == []


def test_a_send_that_fails_after_storing_its_file_removes_it_at_once(
    conversation, client_user, fixed_clock, attachments_dir, monkeypatch
):
    def audit_fails(obj, action, **kwargs):
        if action == "create" and isinstance(obj, Attachment):
            raise DatabaseError("the audit write failed")

    monkeypatch.setattr(services, "_audit", audit_fails)

    with pytest.raises(DatabaseError):
        _send_with_file(conversation, client_user, fixed_clock)

    assert Message.objects.count() == Attachment.objects.count() == 0
    assert list(attachments_dir.iterdir()) == []


def test_the_command_runs_the_sweep(
    conversation, client_user, fixed_clock, attachments_dir, settings
):
    _rolled_back_send(conversation, client_user, fixed_clock)
    [orphan] = attachments_dir.iterdir()
    written = (fixed_clock - _grace(settings) - timedelta(minutes=1)).timestamp()
    os.utime(orphan, (written, written))
    out = StringIO()

    call_command("messaging_orphan_files", stdout=out)

    assert out.getvalue() == "messaging_orphan_files: 1 files deleted\n"
    assert list(attachments_dir.iterdir()) == []
