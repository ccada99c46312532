"""Messaging reads: only the two participants, bodies decrypted here (never stored in clear).

A participant sees every message of the conversation except those the *other* participant
deleted; their own deleted messages come back marked ``deleted`` with no text. Unread counts
are the other participant's visible messages after the reader's receipt.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from django.conf import settings
from django.db.models import Count, F, Q, QuerySet

from api.errors import NotFoundError
from api.models import User
from messaging.attachments import file_read, name_open
from messaging.crypto import body_open
from messaging.errors import ConversationNotFound
from messaging.models import Attachment, Conversation, Message, MessageVersion, MessagingProfile


def _mine(user: User) -> Q:
    return Q(client=user) | Q(therapist=user)


def conversations_of(*, user: User) -> QuerySet[Conversation]:
    """The user's conversations (newest activity first) with ``unread`` counted in the query."""
    unread = Count(
        "messages",
        filter=~Q(messages__sender=user)
        & Q(messages__deleted_at__isnull=True)
        & (
            Q(client=user, messages__seq__gt=F("client_read_seq"))
            | Q(therapist=user, messages__seq__gt=F("therapist_read_seq"))
        ),
    )
    return (
        Conversation.objects.filter(_mine(user))
        .select_related("client", "therapist", "therapist__messaging_profile")
        .annotate(unread=unread)
    )


def conversation_for(*, conversation_id: uuid.UUID, user: User) -> Conversation:
    """One of the user's conversations with its unread count, or a 404 (MSG-01)."""
    conversation = conversations_of(user=user).filter(pk=conversation_id).first()
    if conversation is None:
        raise ConversationNotFound()
    return conversation


def conversation_of(*, conversation_id: uuid.UUID, user: User) -> Conversation:
    """One of the user's conversations without its counts (for reading its messages), or the
    same 404 as ``conversation_for``."""
    conversation = Conversation.objects.filter(_mine(user), pk=conversation_id).first()
    if conversation is None:
        raise ConversationNotFound()
    return conversation


def _hidden_from(viewer: User) -> Q:
    """What the other participant deleted."""
    return Q(deleted_at__isnull=False) & ~Q(sender=viewer)


def visible_messages(*, conversation: Conversation, viewer: User) -> QuerySet[Message]:
    """The conversation's messages as ``viewer`` sees them (unordered: the caller pages)."""
    return Message.objects.filter(conversation=conversation).exclude(_hidden_from(viewer))


def messages_decrypt(messages: Iterable[Message], *, conversation: Conversation) -> list[Message]:
    """Each message of ``conversation`` with ``body`` (its current text; ``None`` once
    deleted) and ``files`` (its attachments with their names; none once deleted)."""
    out = list(messages)
    carrying = [m.pk for m in out if m.has_attachments and m.deleted_at is None]
    files: dict[uuid.UUID, list[Attachment]] = {}
    if carrying:  # one query for the page's files, none for a page without
        for attachment in Attachment.objects.filter(message_id__in=carrying).order_by("created_at"):
            files.setdefault(attachment.message_id, []).append(attachment)
    for message in out:
        message.conversation = conversation
        message.files = [  # type: ignore[attr-defined]
            _with_name(a, message) for a in files.get(message.pk, [])
        ]
        message.body = (  # type: ignore[attr-defined]
            None
            if message.deleted_at is not None
            else body_open(
                message_id=message.pk, version=message.version, sealed=message.body_encrypted
            )
        )
    return out


def message_complete(message: Message) -> Message:
    """A message a service returned, with its text and files as the list shows them."""
    return messages_decrypt([message], conversation=message.conversation)[0]


def _with_name(attachment: Attachment, message: Message) -> Attachment:
    attachment.message = message
    attachment.name = name_open(  # type: ignore[attr-defined]
        attachment_id=attachment.pk, sealed=attachment.name_encrypted
    )
    return attachment


def attachment_for(
    *, conversation: Conversation, attachment_id: uuid.UUID, viewer: User
) -> tuple[Attachment, bytes]:
    """An attachment of a message the viewer sees, named and with its decrypted bytes."""
    attachment = (
        Attachment.objects.filter(
            pk=attachment_id,
            message__in=visible_messages(conversation=conversation, viewer=viewer).filter(
                deleted_at__isnull=True
            ),
        )
        .select_related("message")
        .first()
    )
    if attachment is None:
        raise NotFoundError("No such attachment.")
    attachment.message.conversation = conversation
    _with_name(attachment, attachment.message)
    return attachment, file_read(attachment_id=attachment.pk, storage_name=attachment.storage_name)


def messages_after(
    *, conversation_id: uuid.UUID, viewer: User, after_seq: int, limit: int
) -> list[Message]:
    """Up to ``limit`` messages after ``after_seq`` of one of the viewer's conversations as
    they see it, oldest first, decrypted, each with its conversation (a socket's delivery and
    catch-up, MSG-04). One statement: the participant check is part of it, so a conversation
    that is not the viewer's gives nothing."""
    rows = list(
        Message.objects.filter(
            Q(conversation__client=viewer) | Q(conversation__therapist=viewer),
            conversation_id=conversation_id,
            seq__gt=after_seq,
        )
        .exclude(_hidden_from(viewer))
        .select_related("conversation")
        .order_by("seq")[:limit]
    )
    return messages_decrypt(rows, conversation=rows[0].conversation) if rows else []


def message_versions(
    *, conversation: Conversation, message_id: uuid.UUID, viewer: User
) -> list[MessageVersion]:
    """Every earlier text of one of the viewer's visible messages, oldest first."""
    message = visible_messages(conversation=conversation, viewer=viewer).filter(pk=message_id)
    versions = list(MessageVersion.objects.filter(message__in=message).order_by("version"))
    for version in versions:
        version.body = body_open(  # type: ignore[attr-defined]
            message_id=version.message_id, version=version.version, sealed=version.body_encrypted
        )
    return versions


def crisis_line(jurisdiction: str) -> str:
    """The crisis line of a jurisdiction (US-NY, then US, then the default)."""
    lines: dict[str, str] = settings.MESSAGING_CRISIS_LINES
    for key in (jurisdiction, jurisdiction.split("-", 1)[0]):
        if key and key in lines:
            return lines[key]
    return lines.get("default", "")


def messaging_profile_of(*, user: User) -> MessagingProfile:
    """The user's settings (defaults, unsaved, when they never set any)."""
    found = MessagingProfile.objects.filter(user=user).first()
    return found or MessagingProfile(user=user, updated_at=user.date_joined)


def conversation_export(*, conversation: Conversation, viewer: User) -> list[Message]:
    """Every message the viewer sees, oldest first, decrypted, each with ``earlier``: the texts
    it had before its edits (the whole record, as the client downloads it)."""
    messages = messages_decrypt(
        visible_messages(conversation=conversation, viewer=viewer)
        .select_related(None)
        .order_by("seq"),
        conversation=conversation,
    )
    by_message: dict[uuid.UUID, list[MessageVersion]] = {}
    edited = [m.pk for m in messages if m.version > 1 and m.deleted_at is None]
    for version in MessageVersion.objects.filter(message_id__in=edited).order_by("version"):
        version.body = body_open(  # type: ignore[attr-defined]
            message_id=version.message_id, version=version.version, sealed=version.body_encrypted
        )
        by_message.setdefault(version.message_id, []).append(version)
    for message in messages:
        message.earlier = by_message.get(message.pk, [])  # type: ignore[attr-defined]
    return messages


def compliance_conversations() -> QuerySet[Conversation]:
    """Every conversation, for compliance officers: who wrote to whom and when, never content."""
    return Conversation.objects.all()


def compliance_conversation(*, conversation_id: uuid.UUID) -> Conversation:
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    if conversation is None:
        raise ConversationNotFound()
    return conversation


def compliance_message_metadata(*, conversation: Conversation) -> QuerySet[Message]:
    """The conversation's messages as metadata (sender, kind, times, version, attachment
    count): the bodies are not read, so never decrypted."""
    return (
        Message.objects.filter(conversation=conversation)
        .annotate(attachment_count=Count("attachments"))
        .defer("body_encrypted")
    )
