"""Message bodies at rest: ``api.crypto`` under the field-encryption keys, bound to their
message and version (a ciphertext copied onto another row or version does not decrypt)."""

from __future__ import annotations

import logging
import uuid

from api import crypto
from messaging.errors import MessageUnreadable

logger = logging.getLogger(__name__)


def body_aad(message_id: uuid.UUID, version: int) -> bytes:
    return f"messaging.message:{message_id}:{version}".encode()


def body_seal(*, message_id: uuid.UUID, version: int, body: str) -> tuple[str, str]:
    """The ciphertext of ``body`` and the id of the key it is under."""
    return crypto.encrypt(body, associated_data=body_aad(message_id, version)), (
        crypto.current_key_id()
    )


def body_open(*, message_id: uuid.UUID, version: int, sealed: str) -> str:
    try:
        return crypto.decrypt(sealed, associated_data=body_aad(message_id, version))
    except crypto.DecryptionError as exc:
        logger.error("message %s version %s cannot be decrypted: %s", message_id, version, exc)
        raise MessageUnreadable() from exc
