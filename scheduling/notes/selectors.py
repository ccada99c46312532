"""Session note reads: only the author therapist, decrypted here (never stored in clear)."""

from __future__ import annotations

import uuid

from api.errors import NotFoundError
from api.models import User
from scheduling.models import SessionNote, SessionNoteVersion
from scheduling.notes.services import decrypt_version


def _note_of(*, booking_id: uuid.UUID, author: User) -> SessionNote:
    note = (
        SessionNote.objects.select_related("booking")
        .filter(booking_id=booking_id, author=author, booking__therapist__user=author)
        .first()
    )
    if note is None:
        raise NotFoundError("No such note.")
    return note


def note_current(*, booking_id: uuid.UUID, author: User) -> SessionNote:
    """The note with its current text as ``note.body`` (a 404 for anyone but its author)."""
    note = _note_of(booking_id=booking_id, author=author)
    version = SessionNoteVersion.objects.get(note=note, version=note.current_version)
    note.body = decrypt_version(version)  # type: ignore[attr-defined]
    return note


def note_versions(*, booking_id: uuid.UUID, author: User) -> list[SessionNoteVersion]:
    """Every version, oldest first, each with its text as ``version.body``."""
    note = _note_of(booking_id=booking_id, author=author)
    versions = list(
        SessionNoteVersion.objects.filter(note=note)
        .select_related("note__booking")
        .order_by("version")
    )
    for version in versions:
        version.body = decrypt_version(version)  # type: ignore[attr-defined]
    return versions
