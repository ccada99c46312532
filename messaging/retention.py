"""The records policy for messages: a conversation quiet for ``MESSAGING_RETENTION_DAYS`` has
its messages erased (bodies, earlier versions, attachments and their files); the conversation
row (who and when) and the audit trail stay. Run by ``manage.py messaging_retention``."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef

from audit.services import audit_access
from messaging.attachments import storage
from messaging.models import Attachment, Conversation, Message, MessageVersion


def messages_erase_expired(*, now: datetime, limit: int = 100) -> int:
    """Erase the messages of up to ``limit`` expired conversations; returns how many
    conversations were erased. Each is its own transaction (a file is removed after it
    commits), so a run that stops half-way leaves every conversation whole or erased."""
    cutoff = now - timedelta(days=settings.MESSAGING_RETENTION_DAYS)
    expired = list(
        Conversation.objects.filter(activity_at__lt=cutoff)
        .filter(Exists(Message.objects.filter(conversation=OuterRef("pk"))))
        .values_list("pk", flat=True)[:limit]
    )
    for pk in expired:
        with transaction.atomic():
            conversation = Conversation.objects.select_for_update().get(pk=pk)
            if conversation.activity_at >= cutoff:
                continue  # written to meanwhile
            files = list(
                Attachment.objects.filter(message__conversation=conversation).values_list(
                    "storage_name", flat=True
                )
            )
            Attachment.objects.filter(message__conversation=conversation).delete()
            MessageVersion.objects.filter(message__conversation=conversation).delete()
            erased, _ = Message.objects.filter(conversation=conversation).delete()
            audit_access(
                obj=conversation,
                action="erase",
                actor_label="system",
                details={"reason": "retention", "messages": erased, "files": len(files)},
            )
            for name in files:
                transaction.on_commit(partial(storage().delete, name))
    return len(expired)


def messages_erase_all_expired(*, now: datetime) -> int:
    """``messages_erase_expired`` in batches until none is left; how many conversations were
    erased (the daily job and ``manage.py messaging_retention``)."""
    total = 0
    while erased := messages_erase_expired(now=now):
        total += erased
    return total
