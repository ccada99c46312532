"""Session note writes: a new version per edit, sign-and-lock, and key rotation.

The text of every version is encrypted with ``api.crypto`` (AES-256-GCM under the key that
``FIELD_ENCRYPTION_KEY_ID`` names, separate from ``SECRET_KEY``), bound to its note and version
number as associated data, so a ciphertext copied onto another row does not decrypt. The key id
is stored in clear beside it (``key_id``) for rotation. Text never reaches a log, an audit
event or an error: events carry the note id, the patient and the version number only.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from django.db import transaction
from django.http import HttpRequest

from api import crypto
from api.errors import ConflictError, DomainError, NotFoundError
from api.models import User
from audit.services import audit_access
from scheduling.models import Booking, BookingStatus, SessionNote, SessionNoteVersion
from scheduling.notes.rotation import RotationReport, reencrypt_in_batches

logger = logging.getLogger(__name__)

# Sessions a note can be about: they took place (or are taking place).
NOTABLE = (BookingStatus.CONFIRMED, BookingStatus.COMPLETED, BookingStatus.NO_SHOW)


class NoteLocked(ConflictError):
    code = "note_signed"

    def __init__(self) -> None:
        super().__init__("The note is signed and can no longer change.")


class NoteVersionConflict(ConflictError):
    code = "note_version_conflict"

    def __init__(self, current_version: int) -> None:
        super().__init__(
            "The note has changed since you read it.",
            extra={"current_version": current_version},
        )


class NoteUnreadable(DomainError):
    """A stored note cannot be decrypted (its key is missing or wrong, or the ciphertext was
    altered). Never answered with the ciphertext or anything else in its place."""

    status_code = 500
    code = "decryption_failed"
    title = "Internal server error"

    def __init__(self) -> None:
        super().__init__("This record cannot be decrypted. The operators have been told.")


def version_aad(note_id: uuid.UUID, version: int) -> bytes:
    return f"scheduling.session_note:{note_id}:{version}".encode()


def decrypt_version(version: SessionNoteVersion) -> str:
    try:
        return crypto.decrypt(
            version.body_encrypted, associated_data=version_aad(version.note_id, version.version)
        )
    except crypto.DecryptionError as exc:
        logger.error(
            "session note version %s (key id %s) cannot be decrypted: %s",
            version.pk,
            version.key_id,
            exc,
        )
        raise NoteUnreadable() from exc


def _audit(
    note: SessionNote, action: str, *, request: HttpRequest | None, author: User, version: int
) -> None:
    details = {"version": version}
    if request is not None:  # an AuditedMixin view: joins its batch
        audit_access(obj=note, action=action, details=details)
    else:
        audit_access(obj=note, action=action, actor=author, details=details)


def _own_booking(*, booking_id: uuid.UUID, author: User) -> Booking:
    """The booking, locked, if ``author`` is its therapist (else 404: no oracle)."""
    booking = (
        Booking.objects.select_for_update(no_key=True, of=("self",))
        .select_related("therapist")
        .filter(pk=booking_id, therapist__user=author)
        .first()
    )
    if booking is None:
        raise NotFoundError("No such booking.")
    return booking


@transaction.atomic
def note_write(
    *,
    booking_id: uuid.UUID,
    author: User,
    body: str,
    expected_version: int,
    request: HttpRequest | None = None,
    now: datetime,
) -> SessionNote:
    """Write the note's first version (``expected_version=0``) or the next one.

    Optimistic: ``expected_version`` is the version the therapist edited, so an edit made
    meanwhile (another tab) is a 409 rather than silently overwritten. A signed note is
    read-only (409). Only the booking's therapist writes, once the session has started."""
    booking = _own_booking(booking_id=booking_id, author=author)
    if booking.status not in NOTABLE or booking.start > now:
        raise ConflictError(
            "Notes are written once the session has started.", code="note_too_early"
        )
    note = SessionNote.objects.select_for_update().filter(booking=booking).first()
    if note is None:
        if expected_version != 0:
            raise NoteVersionConflict(0)
        note = SessionNote.objects.create(
            booking=booking, author=author, current_version=1, created_at=now, updated_at=now
        )
        action = "create"
    else:
        if note.author_id != author.pk:
            raise NotFoundError("No such booking.")
        if note.signed_at is not None:
            raise NoteLocked()
        if expected_version != note.current_version:
            raise NoteVersionConflict(note.current_version)
        note.current_version += 1
        note.updated_at = now
        note.save(update_fields=["current_version", "updated_at"])
        action = "update"
    SessionNoteVersion.objects.create(
        note=note,
        version=note.current_version,
        body_encrypted=crypto.encrypt(
            body, associated_data=version_aad(note.pk, note.current_version)
        ),
        key_id=crypto.current_key_id(),
        created_at=now,
    )
    note.booking = booking
    _audit(note, action, request=request, author=author, version=note.current_version)
    return note


@transaction.atomic
def note_sign(
    *, booking_id: uuid.UUID, author: User, request: HttpRequest | None = None, now: datetime
) -> SessionNote:
    """Sign the note: from now on it is read-only (its versions stay readable by the author)."""
    booking = _own_booking(booking_id=booking_id, author=author)
    note = SessionNote.objects.select_for_update().filter(booking=booking, author=author).first()
    if note is None:
        raise NotFoundError("There is no note to sign.", code="note_not_found")
    if note.signed_at is not None:
        raise NoteLocked()
    note.signed_at = now
    note.updated_at = now
    note.save(update_fields=["signed_at", "updated_at"])
    note.booking = booking
    _audit(note, "sign", request=request, author=author, version=note.current_version)
    return note


# --- Key rotation ---------------------------------------------------------------------------------


def _reencrypt(row: SessionNoteVersion) -> None:
    row.body_encrypted = crypto.encrypt(
        decrypt_version(row), associated_data=version_aad(row.note_id, row.version)
    )


def note_keys_rotate(*, batch_size: int = 200, max_batches: int | None = None) -> RotationReport:
    """Re-encrypt note versions written under an older key with the current one (resumable;
    a version that cannot be decrypted stops the run with ``NoteUnreadable``)."""
    return reencrypt_in_batches(
        model=SessionNoteVersion,
        fields=["body_encrypted"],
        reencrypt=_reencrypt,
        batch_size=batch_size,
        max_batches=max_batches,
    )
