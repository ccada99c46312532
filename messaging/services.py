"""Messaging writes: open a conversation, send, edit, delete, read receipts, close.

Every write locks its conversation row first (``select_for_update``), so messages get their
``seq`` one after another and a close and a send cannot cross. Each is audited in the same
transaction as its change through ``audit.services.audit_access`` (an ``AuditedMixin`` view
passes ``request`` so the event joins the request's batch; jobs and sockets pass ``actor``).
What changed is pushed to the participants' sockets after the commit (``messaging.events``).
Text never reaches a log, an audit event or an error: events carry ids, seq and version numbers
only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from api import crypto
from api.errors import ForbiddenError, NotFoundError
from api.models import Role, User
from audit.services import audit_access
from messaging.attachments import (
    AttachmentTooLarge,
    content_type_of,
    file_read,
    file_store,
    name_aad,
    name_open,
    safe_name,
    storage,
)
from messaging.crypto import body_open, body_seal
from messaging.errors import (
    ClientMessageIdReused,
    ConversationClosed,
    ConversationNotFound,
    MessageNotEditable,
    MessageNotFound,
    NoCareRelationship,
)
from messaging.events import publish_on_commit
from messaging.hours import within_office_hours
from messaging.models import (
    Attachment,
    Conversation,
    Message,
    MessageKind,
    MessageVersion,
    MessagingProfile,
)
from scheduling.bookings.selectors import booking_for_participant
from scheduling.clients.selectors import RELATIONSHIP
from scheduling.notes.rotation import RotationReport, reencrypt_in_batches


def _audit(obj: Any, action: str, *, request: Any, actor: User, **details: Any) -> None:
    if request is not None:  # an AuditedMixin view: joins its batch
        audit_access(obj=obj, action=action, details=details)
    else:
        audit_access(obj=obj, action=action, actor=actor, details=details)


def _locked(*, conversation_id: uuid.UUID, user: User) -> Conversation:
    """The conversation, locked, if ``user`` is one of its two participants (else 404)."""
    conversation = (
        Conversation.objects.select_for_update()
        .filter(Q(client=user) | Q(therapist=user), pk=conversation_id)
        .first()
    )
    if conversation is None:
        raise ConversationNotFound()
    return conversation


@transaction.atomic
def conversation_open(
    *, booking_id: uuid.UUID, user: User, request: Any = None, now: datetime
) -> tuple[Conversation, bool]:
    """The conversation of the care relationship a booking names, created on first use.

    Either participant of a booking that became a session (confirmed, completed or no-show;
    past or future) may open it; anyone else, and a hold or a cancelled booking, gets the same
    404 (MSG-01). Idempotent: the pair's one row is returned if it exists (``False``: not
    created by this call)."""
    try:
        booking = booking_for_participant(booking_id=booking_id, user=user)
    except NotFoundError as exc:  # someone else's booking: the same 404 as a hold's
        raise NoCareRelationship() from exc
    if booking.status not in RELATIONSHIP:
        raise NoCareRelationship()
    client_id, therapist_id = booking.client_id, booking.therapist.user_id
    conversation = Conversation.objects.filter(client_id=client_id, therapist_id=therapist_id)
    existing = conversation.first()
    if existing is not None:
        return existing, False
    made = Conversation(
        client_id=client_id,
        therapist_id=therapist_id,
        jurisdiction=booking.client_jurisdiction,
        created_at=now,
        activity_at=now,
    )
    # A concurrent open may have made the pair's row meanwhile: then that one is read.
    Conversation.objects.bulk_create([made], ignore_conflicts=True)
    existing = conversation.get()
    created = existing.pk == made.pk
    if created:
        _audit(existing, "create", request=request, actor=user)
    return existing, created


def _participants(conversation: Conversation) -> list[uuid.UUID]:
    return [conversation.client_id, conversation.therapist_id]


def _role_in(conversation: Conversation, user: User) -> str:
    return "client" if user.pk == conversation.client_id else "therapist"


def _publish_message(conversation: Conversation, message: Message) -> None:
    publish_on_commit(
        _participants(conversation),
        kind="message",
        conversation=str(conversation.pk),
        seq=message.seq,
        message=str(message.pk),
    )


def _publish_change(conversation: Conversation, message: Message) -> None:
    publish_on_commit(
        _participants(conversation),
        kind="changed",
        conversation=str(conversation.pk),
        message=str(message.pk),
    )


def _own_message(*, conversation: Conversation, message_id: uuid.UUID, user: User) -> Message:
    message = (
        Message.objects.select_for_update().filter(pk=message_id, conversation=conversation).first()
    )
    if message is None or (message.deleted_at is not None and message.sender_id != user.pk):
        raise MessageNotFound()
    if message.sender_id != user.pk:
        raise ForbiddenError("Only its sender can change a message.", code="not_sender")
    if message.kind != MessageKind.TEXT or message.deleted_at is not None:
        raise MessageNotEditable("This message can no longer change.")
    message.conversation = conversation
    return message


def _append(
    *,
    conversation: Conversation,
    sender: User,
    kind: str,
    body: str,
    client_message_id: uuid.UUID,
    now: datetime,
) -> Message:
    """Insert the next message of a locked conversation and move its counters."""
    seq = conversation.last_seq + 1
    message_id = uuid.uuid4()
    sealed, key_id = body_seal(message_id=message_id, version=1, body=body)
    message = Message.objects.create(
        id=message_id,
        conversation=conversation,
        seq=seq,
        sender=sender,
        kind=kind,
        client_message_id=client_message_id,
        body_encrypted=sealed,
        key_id=key_id,
        created_at=now,
    )
    read_field = "client_read_seq" if sender.pk == conversation.client_id else "therapist_read_seq"
    conversation.last_seq = seq
    conversation.activity_at = now
    setattr(conversation, read_field, seq)  # a sender has read what they wrote
    conversation.save(update_fields=["last_seq", "activity_at", read_field])
    message.body = body  # type: ignore[attr-defined]
    return message


@dataclass(frozen=True, slots=True)
class FileIn:
    """An uploaded file: the name its sender gave and its bytes (checked here, MSG-03)."""

    name: str
    data: bytes


@transaction.atomic
def message_send(
    *,
    conversation_id: uuid.UUID,
    sender: User,
    body: str,
    client_message_id: uuid.UUID,
    file: FileIn | None = None,
    request: Any = None,
    now: datetime,
) -> tuple[Message, bool]:
    """Send ``body`` (and ``file``); returns the message and whether it is new.

    ``client_message_id`` is the sender's app's id for the message: sent again (a retry after a
    lost answer), the stored message is returned and nothing is added (MSG-04); the same id
    with a different text is a 422. A closed conversation takes no new messages (409). A file
    is checked by its content against the allow-list and its size (``messaging.attachments``),
    then encrypted and stored, the send's last step (``_attach``)."""
    content_type = None
    if file is not None:
        if len(file.data) > settings.MESSAGING_ATTACHMENT_MAX_BYTES:
            raise AttachmentTooLarge()
        content_type = content_type_of(file.data)
    conversation = _locked(conversation_id=conversation_id, user=sender)
    existing = Message.objects.filter(
        conversation=conversation, sender=sender, client_message_id=client_message_id
    ).first()
    if existing is not None:
        stored = body_open(message_id=existing.pk, version=1, sealed=_first_text(existing))
        if stored != body:
            raise ClientMessageIdReused()
        existing.conversation = conversation
        existing.body = body_open(  # type: ignore[attr-defined]
            message_id=existing.pk, version=existing.version, sealed=existing.body_encrypted
        )
        return existing, False
    if conversation.closed_at is not None:
        raise ConversationClosed()
    message = _append(
        conversation=conversation,
        sender=sender,
        kind=MessageKind.TEXT,
        body=body,
        client_message_id=client_message_id,
        now=now,
    )
    _audit(message, "create", request=request, actor=sender, seq=message.seq)
    _publish_message(conversation, message)
    if sender.pk == conversation.client_id:
        _auto_reply(conversation=conversation, now=now)
    if file is not None and content_type is not None:
        _attach(message=message, file=file, content_type=content_type, request=request, now=now)
    return message, True


def _attach(
    *, message: Message, file: FileIn, content_type: str, request: Any, now: datetime
) -> None:
    """Store ``file`` encrypted and its ``Attachment`` row, last in the send's transaction: a
    failure from the write on removes the file before the rollback. A file stored by a send
    that rolls back later (a caller's transaction, the commit) or crashes is named by no row:
    ``attachment_orphans_delete`` removes it."""
    attachment_id = uuid.uuid4()
    storage_name = file_store(attachment_id=attachment_id, data=file.data)
    try:
        attachment = Attachment.objects.create(
            id=attachment_id,
            message=message,
            storage_name=storage_name,
            name_encrypted=crypto.encrypt(
                safe_name(file.name, content_type), associated_data=name_aad(attachment_id)
            ),
            content_type=content_type,
            size=len(file.data),
            key_id=crypto.current_key_id(),
            created_at=now,
        )
        Message.objects.filter(pk=message.pk).update(has_attachments=True)
        message.has_attachments = True
        _audit(attachment, "create", request=request, actor=message.sender, seq=message.seq)
    except BaseException:
        storage().delete(storage_name)
        raise


AUTO_REPLY_QUIET = timedelta(hours=12)


def _auto_reply(*, conversation: Conversation, now: datetime) -> None:
    """Outside the therapist's office hours, their automatic reply follows a client's message
    (once in ``AUTO_REPLY_QUIET``: ten messages at night get one reply)."""
    profile = MessagingProfile.objects.filter(user_id=conversation.therapist_id).first()
    if profile is None or not profile.auto_reply or not profile.office_hours:
        return
    if within_office_hours(windows=profile.office_hours, time_zone=profile.time_zone, now=now):
        return
    recent = Message.objects.filter(
        conversation=conversation,
        kind=MessageKind.AUTO_REPLY,
        created_at__gt=now - AUTO_REPLY_QUIET,
    )
    if recent.exists():
        return
    reply = _append(
        conversation=conversation,
        sender=conversation.therapist,
        kind=MessageKind.AUTO_REPLY,
        body=profile.auto_reply,
        client_message_id=uuid.uuid4(),
        now=now,
    )
    audit_access(obj=reply, action="create", actor_label="system", details={"seq": reply.seq})
    _publish_message(conversation, reply)


@transaction.atomic
def messaging_profile_update(*, user: User, now: datetime, **fields: Any) -> MessagingProfile:
    """Set the user's messaging settings (only therapists have expectations to set)."""
    if user.role != Role.THERAPIST:
        expectations = {"response_time_hours", "office_hours", "auto_reply"} & set(fields)
        if expectations:
            raise ForbiddenError(
                "Only therapists set office hours, a response time or an automatic reply.",
                code="not_therapist",
            )
    profile, _ = MessagingProfile.objects.select_for_update().get_or_create(
        user=user, defaults={"updated_at": now}
    )
    for name, value in fields.items():
        setattr(profile, name, value)
    profile.updated_at = now
    profile.save()
    return profile


def _first_text(message: Message) -> str:
    """The ciphertext of a message's first version (kept as a version once edited)."""
    if message.version == 1:
        return message.body_encrypted
    return MessageVersion.objects.get(message=message, version=1).body_encrypted


@transaction.atomic
def message_edit(
    *,
    conversation_id: uuid.UUID,
    message_id: uuid.UUID,
    editor: User,
    body: str,
    request: Any = None,
    now: datetime,
) -> Message:
    """Replace a message's text; the text it had is kept as a ``MessageVersion``."""
    conversation = _locked(conversation_id=conversation_id, user=editor)
    message = _own_message(conversation=conversation, message_id=message_id, user=editor)
    MessageVersion.objects.create(
        message=message,
        version=message.version,
        body_encrypted=message.body_encrypted,
        key_id=message.key_id,
        created_at=message.edited_at or message.created_at,
    )
    message.version += 1
    message.body_encrypted, message.key_id = body_seal(
        message_id=message.pk, version=message.version, body=body
    )
    message.edited_at = now
    message.save(update_fields=["version", "body_encrypted", "key_id", "edited_at"])
    message.body = body  # type: ignore[attr-defined]
    _audit(message, "update", request=request, actor=editor, version=message.version)
    _publish_change(conversation, message)
    return message


@transaction.atomic
def message_delete(
    *,
    conversation_id: uuid.UUID,
    message_id: uuid.UUID,
    by: User,
    request: Any = None,
    now: datetime,
) -> Message:
    """Withdraw a message: the other participant no longer sees it; the sender sees it marked
    deleted; every version stays (the record, and its audit trail)."""
    conversation = _locked(conversation_id=conversation_id, user=by)
    message = _own_message(conversation=conversation, message_id=message_id, user=by)
    message.deleted_at = now
    message.save(update_fields=["deleted_at"])
    _audit(message, "delete", request=request, actor=by, version=message.version)
    _publish_change(conversation, message)
    return message


@transaction.atomic
def conversation_mark_read(
    *,
    conversation_id: uuid.UUID,
    reader: User,
    up_to_seq: int,
    request: Any = None,
    now: datetime,
) -> Conversation:
    """Move the reader's receipt forward to ``up_to_seq`` (never back; at most the last)."""
    conversation = _locked(conversation_id=conversation_id, user=reader)
    field = "client_read_seq" if reader.pk == conversation.client_id else "therapist_read_seq"
    target = min(max(getattr(conversation, field), up_to_seq), conversation.last_seq)
    if target != getattr(conversation, field):
        setattr(conversation, field, target)
        conversation.save(update_fields=[field])
        publish_on_commit(
            _participants(conversation),
            kind="receipt",
            conversation=str(conversation.pk),
            by=_role_in(conversation, reader),
            seq=target,
        )
    _audit(conversation, "read_receipt", request=request, actor=reader, seq=target)
    return conversation


@transaction.atomic
def conversation_close(
    *,
    conversation_id: uuid.UUID,
    therapist: User,
    note: str,
    request: Any = None,
    now: datetime,
) -> Conversation:
    """Close the conversation to new messages; ``note`` (where to go instead) is its last
    message, encrypted like any other. Only its therapist closes; closing twice is a 409."""
    conversation = _locked(conversation_id=conversation_id, user=therapist)
    if therapist.pk != conversation.therapist_id or therapist.role != Role.THERAPIST:
        raise ForbiddenError("Only the therapist closes a conversation.", code="not_therapist")
    if conversation.closed_at is not None:
        raise ConversationClosed()
    closure = _append(
        conversation=conversation,
        sender=therapist,
        kind=MessageKind.CLOSURE,
        body=note,
        client_message_id=uuid.uuid4(),
        now=now,
    )
    conversation.closed_at = now
    conversation.save(update_fields=["closed_at"])
    _publish_message(conversation, closure)
    _audit(conversation, "close", request=request, actor=therapist, seq=conversation.last_seq)
    return conversation


# --- Key rotation (run by ``manage.py rotate_note_keys``) --------------------------------------


def _reencrypt_message(row: Message) -> None:
    row.body_encrypted, _ = body_seal(
        message_id=row.pk,
        version=row.version,
        body=body_open(message_id=row.pk, version=row.version, sealed=row.body_encrypted),
    )


def _reencrypt_version(row: MessageVersion) -> None:
    row.body_encrypted, _ = body_seal(
        message_id=row.message_id,
        version=row.version,
        body=body_open(message_id=row.message_id, version=row.version, sealed=row.body_encrypted),
    )


def _reencrypt_attachment(row: Attachment) -> None:
    """The file is stored again under a new name; the old one is removed once the batch has
    committed (until then the row names it, so a failed batch leaves every file readable)."""
    old_name = row.storage_name
    data = file_read(attachment_id=row.pk, storage_name=old_name)
    row.storage_name = file_store(attachment_id=row.pk, data=data)
    row.name_encrypted = crypto.encrypt(
        name_open(attachment_id=row.pk, sealed=row.name_encrypted),
        associated_data=name_aad(row.pk),
    )
    transaction.on_commit(partial(storage().delete, old_name))


def message_keys_rotate(
    *, batch_size: int = 200, max_batches: int | None = None
) -> list[RotationReport]:
    """Re-encrypt messages, their earlier versions and attachments (files and names) written
    under an older key with the current one: resumable, batch by batch, as session notes."""
    return [
        reencrypt_in_batches(
            model=model,
            fields=fields,
            reencrypt=reencrypt,
            batch_size=batch_size,
            max_batches=max_batches,
        )
        for model, fields, reencrypt in (
            (Message, ["body_encrypted"], _reencrypt_message),
            (MessageVersion, ["body_encrypted"], _reencrypt_version),
            (Attachment, ["storage_name", "name_encrypted"], _reencrypt_attachment),
        )
    ]
