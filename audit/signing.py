"""Ed25519 signatures on chain heads and export manifests.

The key is the audit trail's own (``AUDIT_SIGNING_KEY``, separate from the JWT key), so a
database administrator who rewrites the whole chain still cannot produce a head that verifies.
Earlier public keys stay in ``AUDIT_PREVIOUS_PUBLIC_KEYS`` ({"kid": "PEM"}) so old heads verify
after a rotation. A signed document is a JSON object with ``kid`` and ``sig`` (base64url of the
signature over the canonical JSON of every other member).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from audit.canonical import canonical_json


@dataclass(frozen=True)
class _Keyring:
    kid: str
    private: Ed25519PrivateKey
    public: dict[str, Ed25519PublicKey]


@lru_cache(maxsize=4)
def _load(private_pem: str, kid: str, previous: tuple[tuple[str, str], ...]) -> _Keyring:
    private = serialization.load_pem_private_key(private_pem.encode(), password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise ImproperlyConfigured("AUDIT_SIGNING_KEY must be an Ed25519 private key.")
    public: dict[str, Ed25519PublicKey] = {kid: private.public_key()}
    for old_kid, pem in previous:
        key = serialization.load_pem_public_key(pem.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ImproperlyConfigured(f"AUDIT_PREVIOUS_PUBLIC_KEYS[{old_kid}] is not Ed25519.")
        public.setdefault(old_kid, key)
    return _Keyring(kid=kid, private=private, public=public)


def _keyring() -> _Keyring:
    return _load(
        settings.AUDIT_SIGNING_KEY,
        settings.AUDIT_SIGNING_KEY_ID,
        tuple(sorted(settings.AUDIT_PREVIOUS_PUBLIC_KEYS.items())),
    )


def sign(document: Mapping[str, Any]) -> dict[str, Any]:
    """``document`` with ``kid`` and ``sig`` added."""
    ring = _keyring()
    body = {k: v for k, v in document.items() if k not in ("kid", "sig")}
    body["kid"] = ring.kid
    signature = ring.private.sign(canonical_json(body))
    return {**body, "sig": base64.urlsafe_b64encode(signature).decode().rstrip("=")}


def verify(document: Mapping[str, Any]) -> bool:
    """Whether ``document`` carries a valid signature by one of our keys."""
    sig, kid = document.get("sig"), document.get("kid")
    key = _keyring().public.get(kid) if isinstance(kid, str) else None
    if key is None or not isinstance(sig, str):
        return False
    body = {k: v for k, v in document.items() if k != "sig"}
    try:
        key.verify(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)), canonical_json(body))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def public_key_pem() -> str:
    """The current public key, for whoever checks heads and exports offline."""
    return (
        _keyring()
        .private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
