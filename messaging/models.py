"""Conversations between a client and their therapist, and their messages (docs/messaging.md).

A conversation belongs to one care relationship (a client and a therapist with a booking
between them, past or future): one row per pair, opened by either side, closed to new messages
by the therapist (with a last message telling the client where to go instead). Messages are
numbered in their conversation (``seq``: 1, 2, 3 …, given under the conversation's row lock),
which is the order everyone sees and the cursor a reconnecting socket resumes from.

Bodies are encrypted at rest (``api.crypto``, the field-encryption keys; ``key_id`` in clear for
rotation) and bound to their message and version as associated data. An edit keeps the text it
replaces as a ``MessageVersion``; a deletion hides the message from the other participant and
keeps every version (the record, and its audit trail). Read receipts are each participant's
highest read ``seq`` on the conversation row; unread counts are counted from them.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from audit.registry import protected


class MessageKind(models.TextChoices):
    TEXT = "text", "Written by a participant"
    CLOSURE = "closure", "The therapist closed the conversation (where to go instead)"
    AUTO_REPLY = "auto_reply", "The therapist's automatic reply outside office hours"


@protected("messaging.conversation", patient=lambda conversation: conversation.client_id)
class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    therapist = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    # The seq of the newest message (0: none yet); bumped with the conversation row locked.
    last_seq = models.PositiveBigIntegerField(default=0)
    # The newest message's time (the creation's until then): the inbox's order and cursor.
    activity_at = models.DateTimeField()
    # Read receipts: the highest seq each participant has read.
    client_read_seq = models.PositiveBigIntegerField(default=0)
    therapist_read_seq = models.PositiveBigIntegerField(default=0)
    # Notifications (MSG-05): the seq up to which each participant was told something waits.
    client_notified_seq = models.PositiveBigIntegerField(default=0)
    therapist_notified_seq = models.PositiveBigIntegerField(default=0)
    # Where the client was for the booking that opened it: the crisis line shown.
    jurisdiction = models.CharField(max_length=6, blank=True)
    created_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["client", "therapist"], name="messaging_one_conversation_per_pair"
            ),
            models.CheckConstraint(
                condition=~Q(client=F("therapist")), name="messaging_conversation_two_people"
            ),
            models.CheckConstraint(
                condition=Q(client_read_seq__lte=F("last_seq"))
                & Q(therapist_read_seq__lte=F("last_seq")),
                name="messaging_read_within_conversation",
            ),
        ]
        indexes = [
            models.Index(fields=["client", "-activity_at"], name="messaging_conv_client"),
            models.Index(fields=["therapist", "-activity_at"], name="messaging_conv_therapist"),
        ]

    def __str__(self) -> str:
        return f"Conversation {self.pk}"


@protected("messaging.message", patient=lambda message: message.conversation.client_id)
class Message(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.PROTECT, related_name="messages"
    )
    seq = models.PositiveBigIntegerField()
    sender = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=MessageKind.choices, default=MessageKind.TEXT)
    # The id the sender's app chose: a resent message is the same message (MSG-04).
    client_message_id = models.UUIDField()
    # The current version's text (older versions are MessageVersion rows).
    body_encrypted = models.TextField()
    key_id = models.CharField(max_length=64)
    version = models.PositiveIntegerField(default=1)
    # Whether it carries files: a page of messages without any reads no attachment rows.
    has_attachments = models.BooleanField(default=False)
    created_at = models.DateTimeField()
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["conversation", "seq"], name="messaging_message_seq"),
            models.UniqueConstraint(
                fields=["conversation", "sender", "client_message_id"],
                name="messaging_message_dedupe",
            ),
            models.CheckConstraint(condition=Q(seq__gte=1), name="messaging_message_seq_positive"),
            models.CheckConstraint(
                condition=Q(version__gte=1), name="messaging_message_version_positive"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=[k.value for k in MessageKind]),
                name="messaging_message_kind_valid",
            ),
            models.CheckConstraint(
                condition=Q(version=1, edited_at__isnull=True)
                | Q(version__gt=1, edited_at__isnull=False),
                name="messaging_message_edited_when_versioned",
            ),
        ]

    def __str__(self) -> str:
        return f"Message {self.pk}"


@protected(
    "messaging.message_version",
    patient=lambda version: version.message.conversation.client_id,
)
class MessageVersion(models.Model):
    """A text a message had before an edit (version 1 is the text as first sent)."""

    message = models.ForeignKey(Message, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    body_encrypted = models.TextField()
    key_id = models.CharField(max_length=64)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["message", "version"], name="messaging_message_version_once"
            ),
            models.CheckConstraint(condition=Q(version__gte=1), name="messaging_version_positive"),
        ]

    def __str__(self) -> str:
        return f"Message {self.message_id} v{self.version}"


@protected(
    "messaging.attachment", patient=lambda attachment: attachment.message.conversation.client_id
)
class Attachment(models.Model):
    """A file sent with a message: stored through Django's storage API (``messaging.storage``),
    encrypted before it is stored (the file and its name; ``key_id`` in clear for rotation).
    ``content_type`` is what its content was found to be, never what the sender declared."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    message = models.ForeignKey(Message, on_delete=models.PROTECT, related_name="attachments")
    storage_name = models.CharField(max_length=255, unique=True)
    name_encrypted = models.TextField()
    content_type = models.CharField(max_length=64)
    size = models.PositiveIntegerField()  # of the plaintext, in bytes
    key_id = models.CharField(max_length=64)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    content_type__in=["application/pdf", "image/png", "image/jpeg", "text/plain"]
                ),
                name="messaging_attachment_allowed_type",
            ),
            models.CheckConstraint(condition=Q(size__gte=1), name="messaging_attachment_not_empty"),
        ]

    def __str__(self) -> str:
        return f"Attachment {self.pk}"


class MessagingProfile(models.Model):
    """A person's messaging settings: quiet hours for notifications (anyone) and, for a
    therapist, the expectations shown to clients: a response-time promise, office hours (weekly
    windows in ``time_zone``) and the automatic reply sent to a message outside them."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="messaging_profile",
    )
    time_zone = models.CharField(max_length=64, default="UTC")
    quiet_start = models.TimeField(null=True, blank=True)
    quiet_end = models.TimeField(null=True, blank=True)
    response_time_hours = models.PositiveSmallIntegerField(null=True, blank=True)
    # [{"weekday": 0-6 (Monday 0), "start": "09:00", "end": "17:00"}, ...]
    office_hours = models.JSONField(default=list, blank=True)
    auto_reply = models.TextField(blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(quiet_start__isnull=True, quiet_end__isnull=True)
                | Q(quiet_start__isnull=False, quiet_end__isnull=False),
                name="messaging_quiet_hours_both_or_none",
            ),
        ]

    def __str__(self) -> str:
        return f"Messaging profile {self.pk}"
