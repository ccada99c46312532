"""Retention: messages of a conversation quiet past MESSAGING_RETENTION_DAYS are erased with
their versions and files; the conversation row and the audit trail stay; a newer one stays."""

from __future__ import annotations

import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from audit.models import AuditEvent
from messaging.models import Attachment, Conversation, Message, MessageVersion
from tests.messaging.test_attachments import TEXT

pytestmark = pytest.mark.django_db


def test_an_expired_conversation_loses_its_messages_and_keeps_its_trail(
    conversation,
    client_api,
    client_user,
    attachments_dir,
    settings,
    django_capture_on_commit_callbacks,
):
    settings.MESSAGING_RETENTION_DAYS = 30
    sent = client_api.post(
        f"/api/v1/conversations/{conversation.pk}/messages/with-file",
        {
            "client_message_id": str(uuid.uuid4()),
            "body": "old",
            "file": SimpleUploadedFile("a.txt", TEXT),
        },
        format="multipart",
    ).json()
    client_api.patch(
        f"/api/v1/conversations/{conversation.pk}/messages/{sent['id']}",
        {"body": "older"},
        format="json",
    )
    trail = AuditEvent.objects.count()
    out = StringIO()
    call_command("messaging_retention", stdout=out)
    assert "0 conversations" in out.getvalue()  # not expired yet
    Conversation.objects.filter(pk=conversation.pk).update(
        activity_at=conversation.activity_at - timedelta(days=31)
    )
    with django_capture_on_commit_callbacks(execute=True):
        call_command("messaging_retention", stdout=out)
    assert "1 conversations erased" in out.getvalue()
    assert Message.objects.count() == MessageVersion.objects.count() == 0
    assert Attachment.objects.count() == 0 and list(attachments_dir.iterdir()) == []
    assert Conversation.objects.filter(pk=conversation.pk).exists()
    erase = AuditEvent.objects.get(action="erase")
    assert erase.patient_id == client_user.pk and erase.details["messages"] == 1
    assert AuditEvent.objects.count() == trail + 1  # nothing of the trail went
    history = client_api.get(f"/api/v1/conversations/{conversation.pk}/messages").json()
    assert history["results"] == []
