"""Session note input and output (the text only ever leaves in a response to its author)."""

from __future__ import annotations

from rest_framework import serializers

from api.serializers import StrictInputSerializer
from scheduling.models import SessionNote, SessionNoteVersion

MAX_NOTE_CHARS = 50_000


class NoteIn(StrictInputSerializer):
    body = serializers.CharField(max_length=MAX_NOTE_CHARS, trim_whitespace=False)
    expected_version = serializers.IntegerField(
        min_value=0, help_text="The version you edited (0 for a new note)"
    )


class NoteOut(serializers.ModelSerializer):
    booking = serializers.UUIDField(source="booking_id")
    version = serializers.IntegerField(source="current_version")
    body = serializers.CharField()
    signed = serializers.SerializerMethodField()

    class Meta:
        model = SessionNote
        fields = ["booking", "version", "body", "signed", "signed_at", "created_at", "updated_at"]

    def get_signed(self, note: SessionNote) -> bool:
        return note.signed_at is not None


class NoteVersionOut(serializers.ModelSerializer):
    body = serializers.CharField()

    class Meta:
        model = SessionNoteVersion
        fields = ["version", "body", "created_at"]
