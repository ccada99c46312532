"""Client profile writes. Date of birth, phone and emergency contact are encrypted with
``api.crypto``, each bound to the user and the field (associated data); the phone also gets a
blind index (an HMAC under ``HMAC_KEY``, a key separate from the encryption keys and from
``SECRET_KEY``) so that it can be looked up by equality without a plaintext column or index.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import asdict, dataclass
from datetime import date, datetime

from django.db import transaction
from django.http import HttpRequest

from api import crypto
from api.errors import DomainError, ForbiddenError
from api.models import Role, User
from audit.services import audit_access
from scheduling.models import ClientProfile
from scheduling.notes.rotation import RotationReport, reencrypt_in_batches

logger = logging.getLogger(__name__)

PHONE_INDEX_PURPOSE = "scheduling.client_profile.phone"
_PHONE_NOISE = re.compile(r"[\s().\-]")
# ASCII digits only: \d would also take other scripts' digits (٣), which no dialler dials.
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
# What a client may type: E.164 with spaces, dashes, dots and brackets anywhere (the schema's
# pattern; normalize_phone removes them).
PHONE_TEXT = r"^[\s().-]*\+[\s().-]*[1-9](?:[\s().-]*[0-9]){6,14}[\s().-]*$"


class ProfileUnreadable(DomainError):
    status_code = 500
    code = "decryption_failed"
    title = "Internal server error"

    def __init__(self) -> None:
        super().__init__("This record cannot be decrypted. The operators have been told.")


@dataclass(frozen=True, slots=True)
class EmergencyContact:
    name: str
    phone: str
    relationship: str = ""


@dataclass(frozen=True, slots=True)
class ClientDetails:
    """A profile's protected values in clear (only ever in memory)."""

    date_of_birth: date | None
    phone: str
    emergency_contact: EmergencyContact | None
    home_jurisdiction: str


def normalize_phone(phone: str) -> str:
    """``+1 (212) 555-0100`` → ``+12125550100`` (E.164); what the blind index hashes."""
    return _PHONE_NOISE.sub("", phone)


def phone_index(phone: str) -> str:
    return crypto.keyed_hash(normalize_phone(phone), purpose=PHONE_INDEX_PURPOSE)


def _aad(user_id: uuid.UUID, field: str) -> bytes:
    return f"scheduling.client_profile:{user_id}:{field}".encode()


def _seal(user_id: uuid.UUID, field: str, value: str) -> str:
    return crypto.encrypt(value, associated_data=_aad(user_id, field)) if value else ""


def _open(profile: ClientProfile, field: str) -> str:
    sealed = getattr(profile, f"{field}_encrypted")
    if not sealed:
        return ""
    try:
        return crypto.decrypt(sealed, associated_data=_aad(profile.user_id, field))
    except crypto.DecryptionError as exc:
        logger.error(
            "client profile %s field %s (key id %s) cannot be decrypted: %s",
            profile.pk,
            field,
            profile.key_id,
            exc,
        )
        raise ProfileUnreadable() from exc


def client_details(profile: ClientProfile) -> ClientDetails:
    dob = _open(profile, "date_of_birth")
    contact = _open(profile, "emergency_contact")
    return ClientDetails(
        date_of_birth=date.fromisoformat(dob) if dob else None,
        phone=_open(profile, "phone"),
        emergency_contact=EmergencyContact(**json.loads(contact)) if contact else None,
        home_jurisdiction=profile.home_jurisdiction,
    )


def _encrypted_fields(user_id: uuid.UUID, details: ClientDetails) -> dict[str, str]:
    contact = details.emergency_contact
    return {
        "date_of_birth_encrypted": _seal(
            user_id,
            "date_of_birth",
            details.date_of_birth.isoformat() if details.date_of_birth else "",
        ),
        "phone_encrypted": _seal(user_id, "phone", details.phone),
        "emergency_contact_encrypted": _seal(
            user_id, "emergency_contact", json.dumps(asdict(contact)) if contact else ""
        ),
    }


@transaction.atomic
def client_profile_save(
    *, user: User, details: ClientDetails, request: HttpRequest | None = None, now: datetime
) -> ClientProfile:
    """Create or replace the client's own profile (every field, encrypted under the current
    key). Audited by field group, never by value."""
    if user.role != Role.CLIENT:
        raise ForbiddenError("Only clients have a client profile.", code="clients_only")
    details = ClientDetails(
        date_of_birth=details.date_of_birth,
        phone=normalize_phone(details.phone) if details.phone else "",
        emergency_contact=details.emergency_contact,
        home_jurisdiction=details.home_jurisdiction,
    )
    values = {
        **_encrypted_fields(user.pk, details),
        "phone_index": phone_index(details.phone) if details.phone else "",
        "home_jurisdiction": details.home_jurisdiction,
        "key_id": crypto.current_key_id(),
        "updated_at": now,
    }
    profile, created = ClientProfile.objects.update_or_create(
        user=user, defaults=values, create_defaults={**values, "created_at": now}
    )
    action = "create" if created else "update"
    groups = sorted(
        name
        for name, present in (
            ("date_of_birth", details.date_of_birth is not None),
            ("phone", bool(details.phone)),
            ("emergency_contact", details.emergency_contact is not None),
            ("home_jurisdiction", bool(details.home_jurisdiction)),
        )
        if present
    )
    if request is not None:
        audit_access(obj=profile, action=action, details={"field_groups": groups})
    else:
        audit_access(obj=profile, action=action, actor=user, details={"field_groups": groups})
    return profile


def _reencrypt(row: ClientProfile) -> None:
    for name, value in _encrypted_fields(row.user_id, client_details(row)).items():
        setattr(row, name, value)


def client_profile_keys_rotate(
    *, batch_size: int = 200, max_batches: int | None = None
) -> RotationReport:
    """Re-encrypt profiles written under an older key with the current one (resumable)."""
    return reencrypt_in_batches(
        model=ClientProfile,
        fields=["date_of_birth_encrypted", "phone_encrypted", "emergency_contact_encrypted"],
        reencrypt=_reencrypt,
        batch_size=batch_size,
        max_batches=max_batches,
    )
