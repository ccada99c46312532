"""Field-level authenticated encryption (AES-256-GCM) with key ids, and keyed hashing.

Ciphertext format: ``v1:<key id>:<base64url(nonce | ciphertext+tag)>``. The key id lets keys
rotate: new writes use ``FIELD_ENCRYPTION_KEY_ID``; older rows decrypt with the key they name
until a re-encryption job moves them. The keys are separate from ``SECRET_KEY``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

PREFIX = "v1"


class DecryptionError(Exception):
    """The value cannot be decrypted: unknown key id, wrong key, or altered ciphertext."""


@lru_cache(maxsize=16)
def _aead(key_b64: str) -> AESGCM:
    key = base64.b64decode(key_b64)
    if len(key) != 32:
        raise DecryptionError("field encryption keys must be 32 bytes (base64-encoded)")
    return AESGCM(key)


def _key(key_id: str) -> AESGCM:
    keys: dict[str, str] = settings.FIELD_ENCRYPTION_KEYS
    if key_id not in keys:
        raise DecryptionError(f"unknown field encryption key id {key_id!r}")
    return _aead(keys[key_id])


def current_key_id() -> str:
    return str(settings.FIELD_ENCRYPTION_KEY_ID)


def encrypt(plaintext: str, *, associated_data: bytes = b"") -> str:
    key_id = current_key_id()
    nonce = os.urandom(12)
    sealed = _key(key_id).encrypt(nonce, plaintext.encode("utf-8"), associated_data)
    return f"{PREFIX}:{key_id}:{base64.urlsafe_b64encode(nonce + sealed).decode('ascii')}"


def key_id_of(ciphertext: str) -> str:
    try:
        prefix, key_id, _ = ciphertext.split(":", 2)
    except ValueError as exc:
        raise DecryptionError("not an encrypted value") from exc
    if prefix != PREFIX:
        raise DecryptionError("unknown ciphertext version")
    return key_id


def decrypt(ciphertext: str, *, associated_data: bytes = b"") -> str:
    key_id = key_id_of(ciphertext)
    try:
        raw = base64.urlsafe_b64decode(ciphertext.split(":", 2)[2].encode("ascii"))
        return _key(key_id).decrypt(raw[:12], raw[12:], associated_data).decode("utf-8")
    except (InvalidTag, ValueError) as exc:
        raise DecryptionError("ciphertext failed authentication") from exc


def encrypt_bytes(data: bytes, *, associated_data: bytes = b"") -> bytes:
    """``encrypt`` for files: ``v1:<key id>:`` then nonce | ciphertext+tag, raw (no base64)."""
    key_id = current_key_id()
    nonce = os.urandom(12)
    sealed = _key(key_id).encrypt(nonce, data, associated_data)
    return f"{PREFIX}:{key_id}:".encode("ascii") + nonce + sealed


def decrypt_bytes(sealed: bytes, *, associated_data: bytes = b"") -> bytes:
    try:
        prefix, key_id, raw = sealed.split(b":", 2)
        if prefix.decode("ascii") != PREFIX:
            raise DecryptionError("unknown ciphertext version")
        return _key(key_id.decode("ascii")).decrypt(raw[:12], raw[12:], associated_data)
    except (InvalidTag, ValueError, UnicodeDecodeError) as exc:
        raise DecryptionError("ciphertext failed authentication") from exc


def keyed_hash(value: str, *, purpose: str) -> str:
    """HMAC-SHA256 under ``HMAC_KEY``, domain-separated by ``purpose`` (blind indexes, codes)."""
    key = str(settings.HMAC_KEY).encode("utf-8")
    return hmac.new(key, f"{purpose}\x00{value}".encode(), hashlib.sha256).hexdigest()
