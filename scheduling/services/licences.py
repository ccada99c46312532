"""Licences: a therapist lists them, an admin verifies them; each change is audited."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from django.db import transaction
from django.http import HttpRequest

from api.errors import ConflictError, NotFoundError
from api.models import User
from audit.services import (
    audit_record,
)
from scheduling.models import (
    Licence,
    TherapistProfile,
)
from scheduling.services.directory import directory_card_refresh
from scheduling.services.unique import unique_or_conflict


def _licence_audit(action: str, licence: Licence, actor: User, request: HttpRequest | None) -> None:
    audit_record(
        action=action,
        actor=actor,
        request=request,
        resource_type="scheduling.licence",
        resource_id=str(licence.pk),
        details={"jurisdiction": licence.jurisdiction},
    )


@transaction.atomic
def licence_create(
    *,
    profile: TherapistProfile,
    jurisdiction: str,
    number: str,
    expires_on: date,
    actor: User,
    request: HttpRequest | None,
    now: datetime,
) -> Licence:
    """A licence awaiting an admin's verification."""
    with unique_or_conflict("This licence is already listed.", code="licence_exists"):
        licence = Licence.objects.create(
            therapist=profile,
            jurisdiction=jurisdiction,
            number=number,
            expires_on=expires_on,
            created_at=now,
        )
    _licence_audit("scheduling.licence.created", licence, actor, request)
    return licence


@transaction.atomic
def licence_update(
    *,
    licence: Licence,
    fields: dict[str, Any],
    actor: User,
    request: HttpRequest | None,
    now: datetime,
) -> Licence:
    """Change a licence; any change clears its verification (an admin verifies it again)."""
    licence = Licence.objects.select_for_update().get(pk=licence.pk)
    for key, value in fields.items():
        setattr(licence, key, value)
    licence.verified_by = None
    licence.verified_at = None
    with unique_or_conflict("This licence is already listed.", code="licence_exists"):
        licence.save(update_fields=[*fields, "verified_by", "verified_at"])
    directory_card_refresh(therapist=licence.therapist)
    _licence_audit("scheduling.licence.updated", licence, actor, request)
    return licence


@transaction.atomic
def licence_delete(
    *, licence: Licence, actor: User, request: HttpRequest | None, now: datetime
) -> None:
    _licence_audit("scheduling.licence.deleted", licence, actor, request)
    therapist = licence.therapist
    licence.delete()
    directory_card_refresh(therapist=therapist)


@transaction.atomic
def licence_verify(
    *, licence_id: uuid.UUID, admin: User, request: HttpRequest | None, now: datetime
) -> Licence:
    """An admin confirms a licence: who and when are recorded, and audited."""
    licence = Licence.objects.select_for_update().filter(pk=licence_id).first()
    if licence is None:
        raise NotFoundError("No such licence.")
    if licence.expires_on < now.date():
        raise ConflictError("This licence has expired.", code="licence_expired")
    licence.verified_by = admin
    licence.verified_at = now
    licence.save(update_fields=["verified_by", "verified_at"])
    directory_card_refresh(therapist=licence.therapist)
    _licence_audit("scheduling.licence.verified", licence, admin, request)
    return licence
