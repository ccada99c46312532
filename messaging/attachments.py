"""Attachments (MSG-03): what a file is by its content, and how it is kept.

``content_type_of`` looks at the bytes only (a name or a declared type decides nothing) and
answers one of the allow-list: PDF (``%PDF-``), PNG (its 8-byte signature), JPEG (``FF D8 FF``)
or plain text (UTF-8 with no control characters but tab, line feed, carriage return and form
feed); anything else is refused. Files are encrypted (``api.crypto.encrypt_bytes``, bound to the
attachment's id) before they reach the storage, under a random name that says nothing.
"""

from __future__ import annotations

import re
import uuid
from functools import lru_cache

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import Storage
from django.utils.module_loading import import_string

from api import crypto
from api.errors import DomainError
from messaging.errors import MessageUnreadable

PDF, PNG, JPEG, TEXT = "application/pdf", "image/png", "image/jpeg", "text/plain"
ALLOWED = (PDF, PNG, JPEG, TEXT)
EXTENSIONS = {PDF: "pdf", PNG: "png", JPEG: "jpg", TEXT: "txt"}
_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")


class AttachmentRefused(DomainError):
    status_code = 415
    code = "attachment_type_refused"
    title = "Unsupported media type"

    def __init__(self) -> None:
        super().__init__("Attach a PDF, a PNG or JPEG image, or plain text.")


class AttachmentTooLarge(DomainError):
    status_code = 413
    code = "attachment_too_large"
    title = "Payload too large"

    def __init__(self) -> None:
        limit = settings.MESSAGING_ATTACHMENT_MAX_BYTES
        super().__init__(f"Attachments are at most {limit} bytes.", extra={"max_bytes": limit})


def content_type_of(data: bytes) -> str:
    """The allow-listed type the content is, or ``AttachmentRefused``."""
    if data.startswith(b"%PDF-"):
        return PDF
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise AttachmentRefused() from None
    if not text or _CONTROL.search(text):
        raise AttachmentRefused()
    return TEXT


@lru_cache(maxsize=1)
def _storage(backend: str, options: tuple[tuple[str, object], ...]) -> Storage:
    storage: Storage = import_string(backend)(**dict(options))
    return storage


def storage() -> Storage:
    """The attachments' storage (``MESSAGING_ATTACHMENT_STORAGE``), built once per setting."""
    config = settings.MESSAGING_ATTACHMENT_STORAGE
    return _storage(config["BACKEND"], tuple(sorted(config.get("OPTIONS", {}).items())))


def file_aad(attachment_id: uuid.UUID) -> bytes:
    return f"messaging.attachment:{attachment_id}".encode()


def name_aad(attachment_id: uuid.UUID) -> bytes:
    return f"messaging.attachment.name:{attachment_id}".encode()


def file_store(*, attachment_id: uuid.UUID, data: bytes) -> str:
    """Encrypt ``data`` and store it under a fresh random name; returns that name."""
    sealed = crypto.encrypt_bytes(data, associated_data=file_aad(attachment_id))
    return storage().save(f"{uuid.uuid4().hex}.bin", ContentFile(sealed))


def file_read(*, attachment_id: uuid.UUID, storage_name: str) -> bytes:
    try:
        with storage().open(storage_name, "rb") as handle:
            sealed = handle.read()
        return crypto.decrypt_bytes(sealed, associated_data=file_aad(attachment_id))
    except (crypto.DecryptionError, OSError) as exc:
        raise MessageUnreadable() from exc


def name_open(*, attachment_id: uuid.UUID, sealed: str) -> str:
    try:
        return crypto.decrypt(sealed, associated_data=name_aad(attachment_id))
    except crypto.DecryptionError as exc:
        raise MessageUnreadable() from exc


def safe_name(name: str, content_type: str) -> str:
    """The sender's file name made harmless for a ``Content-Disposition`` header and a file
    system: no path, no control or quoting characters, at most 100 characters, and the
    extension of what the content is."""
    base = re.sub(r"[^\w.\- ]", "_", name.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]).strip(" .")
    stem = (base.rsplit(".", 1)[0] if "." in base else base)[:100] or "attachment"
    return f"{stem}.{EXTENSIONS[content_type]}"
