"""Messaging input (strict) and output. Text is returned as the text it was sent as: JSON
strings, never HTML (MSG-06); the server renders none of it."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from api.serializers import StrictInputSerializer
from messaging.attachments import ALLOWED
from messaging.models import Attachment, Conversation, Message, MessageVersion, MessagingProfile
from messaging.selectors import crisis_line
from scheduling.serializers import validate_zone

NOT_FOR_EMERGENCIES = "Messages are not watched around the clock: do not use them in an emergency."


def _text(max_length: int, help_text: str) -> serializers.CharField:
    # Kept as sent: no trimming (a message may start with spaces), NUL and lone surrogates are
    # refused by the JSON parser before this (api/parsers.py).
    return serializers.CharField(max_length=max_length, trim_whitespace=False, help_text=help_text)


class ConversationOpenIn(StrictInputSerializer):
    booking = serializers.UUIDField(
        help_text="A booking between the two of you (any session, past or future)"
    )


class MessageIn(StrictInputSerializer):
    client_message_id = serializers.UUIDField(
        help_text="Your app's id for this message: sending it again returns the same message"
    )
    body = _text(settings.MESSAGING_MAX_MESSAGE_CHARS, "Plain text (never rendered as HTML)")


class MessageWithFileIn(StrictInputSerializer):
    client_message_id = serializers.UUIDField(
        help_text="Your app's id for this message: sending it again returns the same message"
    )
    body = serializers.CharField(
        max_length=settings.MESSAGING_MAX_MESSAGE_CHARS,
        trim_whitespace=False,
        allow_blank=True,
        default="",
        help_text="Plain text to go with the file (may be empty)",
    )
    file = serializers.FileField(
        allow_empty_file=False,
        help_text="PDF, PNG, JPEG or plain text, judged by its content; size-limited",
    )


class MessageEditIn(StrictInputSerializer):
    body = _text(settings.MESSAGING_MAX_MESSAGE_CHARS, "The new text (the old one is kept)")


class ReadIn(StrictInputSerializer):
    seq = serializers.IntegerField(
        min_value=0, max_value=2**53, help_text="The newest message you have read"
    )


class CloseIn(StrictInputSerializer):
    note = _text(
        settings.MESSAGING_MAX_NOTE_CHARS,
        "Told to the client as the last message: where to go instead",
    )


_HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class OfficeHoursWindow(StrictInputSerializer):
    weekday = serializers.IntegerField(min_value=0, max_value=6, help_text="Monday 0 … Sunday 6")
    start = serializers.RegexField(_HHMM, max_length=5, help_text="HH:MM, local time")
    end = serializers.RegexField(_HHMM, max_length=5, help_text="HH:MM, after start")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["start"] >= attrs["end"]:
            raise serializers.ValidationError({"end": ["Must be after start."]})
        return attrs


class MessagingProfileIn(StrictInputSerializer):
    time_zone = serializers.CharField(max_length=64, validators=[validate_zone])
    quiet_start = serializers.TimeField(
        allow_null=True, required=False, help_text="No notifications from (local time)"
    )
    quiet_end = serializers.TimeField(allow_null=True, required=False, help_text="… until")
    response_time_hours = serializers.IntegerField(
        min_value=1, max_value=168, allow_null=True, required=False, help_text="Therapists"
    )
    office_hours = OfficeHoursWindow(many=True, required=False, max_length=21)  # type: ignore[call-arg]
    auto_reply = serializers.CharField(
        max_length=1000, allow_blank=True, required=False, trim_whitespace=False
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if (attrs.get("quiet_start") is None) != (attrs.get("quiet_end") is None):
            raise serializers.ValidationError(
                {"quiet_end": ["Give both ends of the quiet hours, or neither."]}
            )
        return attrs


class MessagingProfileOut(serializers.ModelSerializer):
    office_hours = OfficeHoursWindow(many=True)

    class Meta:
        model = MessagingProfile
        fields = [
            "time_zone",
            "quiet_start",
            "quiet_end",
            "response_time_hours",
            "office_hours",
            "auto_reply",
        ]


class ExpectationsOut(serializers.Serializer):
    response_time_hours = serializers.IntegerField(allow_null=True)
    office_hours = OfficeHoursWindow(many=True)
    time_zone = serializers.CharField()


class ConversationOut(serializers.ModelSerializer):
    unread = serializers.IntegerField(help_text="Messages from the other participant not read")
    notice = serializers.SerializerMethodField(
        help_text="Shown when the conversation opens: not for emergencies, and where to call"
    )
    expectations = serializers.SerializerMethodField(
        help_text="The therapist's response-time promise and office hours"
    )
    client_name = serializers.CharField(source="client.full_name")
    therapist_name = serializers.CharField(source="therapist.full_name")
    closed = serializers.SerializerMethodField()

    class Meta:
        model = Conversation
        fields = [
            "id",
            "client",
            "client_name",
            "therapist",
            "therapist_name",
            "last_seq",
            "client_read_seq",
            "therapist_read_seq",
            "unread",
            "activity_at",
            "created_at",
            "closed",
            "closed_at",
            "notice",
            "expectations",
        ]

    def get_closed(self, conversation: Conversation) -> bool:
        return conversation.closed_at is not None

    def get_notice(self, conversation: Conversation) -> str:
        return f"{NOT_FOR_EMERGENCIES} {crisis_line(conversation.jurisdiction)}"

    @extend_schema_field(ExpectationsOut)
    def get_expectations(self, conversation: Conversation) -> dict[str, Any]:
        try:
            profile: MessagingProfile | None = conversation.therapist.messaging_profile
        except MessagingProfile.DoesNotExist:
            profile = None
        return {
            "response_time_hours": profile.response_time_hours if profile else None,
            "office_hours": profile.office_hours if profile else [],
            "time_zone": profile.time_zone if profile else "UTC",
        }


class AttachmentOut(serializers.ModelSerializer):
    name = serializers.CharField(help_text="A safe name with the extension of what it is")
    content_type = serializers.ChoiceField(choices=ALLOWED, help_text="Found from its content")

    class Meta:
        model = Attachment
        fields = ["id", "name", "content_type", "size", "created_at"]


class MessageOut(serializers.ModelSerializer):
    conversation = serializers.UUIDField(source="conversation_id")
    sender = serializers.UUIDField(source="sender_id")
    body = serializers.CharField(
        allow_null=True, help_text="The current text; null once its sender deleted it"
    )
    attachments = AttachmentOut(many=True, source="files")
    deleted = serializers.SerializerMethodField()
    edited = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = [
            "id",
            "conversation",
            "seq",
            "sender",
            "kind",
            "client_message_id",
            "body",
            "attachments",
            "version",
            "edited",
            "deleted",
            "created_at",
            "edited_at",
            "deleted_at",
        ]

    def get_deleted(self, message: Message) -> bool:
        return message.deleted_at is not None

    def get_edited(self, message: Message) -> bool:
        return message.edited_at is not None


class MessageVersionOut(serializers.ModelSerializer):
    body = serializers.CharField()

    class Meta:
        model = MessageVersion
        fields = ["version", "body", "created_at"]


class ExportMessageOut(MessageOut):
    earlier = MessageVersionOut(many=True, help_text="The texts it had before its edits")

    class Meta(MessageOut.Meta):
        fields = [*MessageOut.Meta.fields, "earlier"]


class ConversationExportOut(serializers.Serializer):
    """A participant's whole conversation: the record as they download it."""

    conversation = ConversationOut()
    exported_at = serializers.DateTimeField()
    messages = ExportMessageOut(many=True)


class ComplianceConversationOut(serializers.ModelSerializer):
    """Metadata only: who and when, never content or names."""

    class Meta:
        model = Conversation
        fields = ["id", "client", "therapist", "created_at", "activity_at", "last_seq", "closed_at"]


class MessageMetadataOut(serializers.ModelSerializer):
    attachment_count = serializers.IntegerField()

    class Meta:
        model = Message
        fields = [
            "id",
            "seq",
            "sender",
            "kind",
            "version",
            "attachment_count",
            "created_at",
            "edited_at",
            "deleted_at",
        ]
