"""Session notes: one note per booking, every version kept, bodies encrypted at rest."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from audit.registry import protected
from scheduling.models.bookings import Booking


@protected("scheduling.session_note", patient=lambda note: note.booking.client_id)
class SessionNote(models.Model):
    """A therapist's notes on one booking: readable by its author only, versioned; once signed
    it is locked (read-only). The text lives in ``SessionNoteVersion`` rows, encrypted."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    booking = models.OneToOneField(Booking, on_delete=models.PROTECT, related_name="note")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="authored_notes"
    )
    current_version = models.PositiveIntegerField(default=1)
    signed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"SessionNote {self.pk}"


@protected(
    "scheduling.session_note_version", patient=lambda version: version.note.booking.client_id
)
class SessionNoteVersion(models.Model):
    """One version of a note's text: ``body_encrypted`` is AES-GCM under the key ``key_id`` names,
    bound to (note, version). Versions are never changed, except re-encrypted under a new key."""

    note = models.ForeignKey(SessionNote, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    body_encrypted = models.TextField()
    key_id = models.CharField(max_length=64)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["note", "version"], name="note_version_unique"),
        ]
        indexes = [models.Index(fields=["key_id", "id"], name="note_version_key")]

    def __str__(self) -> str:
        return f"SessionNoteVersion {self.pk}"
