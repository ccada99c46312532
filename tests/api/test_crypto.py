"""``api.crypto``: AES-256-GCM field encryption with key ids. Every failure is an explicit
``DecryptionError``: no value is ever handed back as it was stored."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from api import crypto

KEY_1 = base64.b64encode(b"1" * 32).decode()
KEY_2 = base64.b64encode(b"2" * 32).decode()
PLAINTEXT = "Jane Example, born 1980-01-01, panic disorder"
AAD = b"tests:record-1:field"


@pytest.fixture(autouse=True)
def keys(settings: Any) -> None:
    settings.FIELD_ENCRYPTION_KEYS = {"k1": KEY_1}
    settings.FIELD_ENCRYPTION_KEY_ID = "k1"


def _payload(ciphertext: str) -> bytes:
    return base64.urlsafe_b64decode(ciphertext.split(":", 2)[2])


def _with_payload(ciphertext: str, raw: bytes) -> str:
    prefix, key_id, _ = ciphertext.split(":", 2)
    return f"{prefix}:{key_id}:{base64.urlsafe_b64encode(raw).decode()}"


def test_a_value_round_trips_under_its_key_id():
    sealed = crypto.encrypt(PLAINTEXT, associated_data=AAD)
    assert sealed.startswith("v1:k1:") and "Jane" not in sealed
    assert crypto.decrypt(sealed, associated_data=AAD) == PLAINTEXT
    assert crypto.encrypt(PLAINTEXT, associated_data=AAD) != sealed  # a fresh nonce each time


def test_enc_04_flipping_any_one_byte_is_a_decryption_error():
    """ENC-04: one flipped byte anywhere (nonce, ciphertext or tag) fails authentication."""
    sealed = crypto.encrypt(PLAINTEXT, associated_data=AAD)
    raw = _payload(sealed)
    assert len(raw) == 12 + len(PLAINTEXT.encode()) + 16
    for index in range(len(raw)):
        flipped = bytearray(raw)
        flipped[index] ^= 0x01
        with pytest.raises(crypto.DecryptionError, match="failed authentication"):
            crypto.decrypt(_with_payload(sealed, bytes(flipped)), associated_data=AAD)


@pytest.mark.parametrize(
    "cut", [pytest.param(-1, id="last-byte"), pytest.param(28, id="to-nonce+tag"), 0]
)
def test_enc_04_a_truncated_ciphertext_is_a_decryption_error(cut):
    """ENC-04: a shortened ciphertext (even to nothing) is refused, not half-decrypted."""
    sealed = crypto.encrypt(PLAINTEXT, associated_data=AAD)
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(_with_payload(sealed, _payload(sealed)[:cut]), associated_data=AAD)


def test_enc_04_a_ciphertext_bound_to_another_record_does_not_decrypt():
    """ENC-04: the associated data binds a value to its row and field: moved, it fails."""
    sealed = crypto.encrypt(PLAINTEXT, associated_data=AAD)
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(sealed, associated_data=b"tests:record-2:field")


def test_enc_03_a_missing_key_is_an_explicit_error(settings):
    """ENC-03: the key the value names is no longer configured → an error naming the key id."""
    sealed = crypto.encrypt(PLAINTEXT, associated_data=AAD)
    settings.FIELD_ENCRYPTION_KEYS = {"k2": KEY_2}
    settings.FIELD_ENCRYPTION_KEY_ID = "k2"
    with pytest.raises(crypto.DecryptionError, match="unknown field encryption key id 'k1'"):
        crypto.decrypt(sealed, associated_data=AAD)


def test_enc_03_a_wrong_key_under_the_same_id_is_an_explicit_error(settings):
    """ENC-03: the key id is there but with other bytes → an error, not garbage text."""
    sealed = crypto.encrypt(PLAINTEXT, associated_data=AAD)
    settings.FIELD_ENCRYPTION_KEYS = {"k1": KEY_2}
    with pytest.raises(crypto.DecryptionError, match="failed authentication"):
        crypto.decrypt(sealed, associated_data=AAD)


@pytest.mark.parametrize(
    "stored",
    [
        PLAINTEXT,  # a value never encrypted (or written around the encryption)
        "",
        "v1:k1",
        "v2:k1:AAAA",
        "v1:k1:not base64!",
        "v1:k1:",
    ],
)
def test_enc_03_a_value_that_is_not_our_ciphertext_is_never_returned_as_text(stored):
    """ENC-03: no silent pass-through: anything that does not decrypt is an error."""
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(stored, associated_data=AAD)


def test_enc_03_without_the_current_key_nothing_is_encrypted(settings):
    """ENC-03: a write under a current key id that is not configured fails before any value
    exists to be saved (and start-up refuses such settings: test_settings)."""
    settings.FIELD_ENCRYPTION_KEY_ID = "k9"
    with pytest.raises(crypto.DecryptionError, match="unknown field encryption key id 'k9'"):
        crypto.encrypt(PLAINTEXT, associated_data=AAD)


@pytest.mark.parametrize("length", [16, 31, 33])
def test_enc_03_a_key_of_the_wrong_length_is_refused(settings, length):
    """ENC-03: a misconfigured key (not 32 bytes) is an explicit error, both ways."""
    settings.FIELD_ENCRYPTION_KEYS = {"k1": base64.b64encode(b"x" * length).decode()}
    with pytest.raises(crypto.DecryptionError, match="32 bytes"):
        crypto.encrypt(PLAINTEXT, associated_data=AAD)
