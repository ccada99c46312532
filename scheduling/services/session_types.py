"""Session types: create, update and archive what a therapist offers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction

from scheduling.models import (
    SessionType,
    TherapistProfile,
)
from scheduling.services.directory import availability_summary_refresh, directory_card_refresh
from scheduling.services.unique import unique_or_conflict


@transaction.atomic
def session_type_create(
    *,
    profile: TherapistProfile,
    name: str,
    duration_minutes: int,
    price_minor: int,
    currency: str,
    delivery: str,
    cpt_code: str = "",
    now: datetime,
) -> SessionType:
    with unique_or_conflict("A session type with this name exists.", code="session_type_exists"):
        session_type = SessionType.objects.create(
            therapist=profile,
            name=name,
            duration_minutes=duration_minutes,
            price_minor=price_minor,
            currency=currency,
            delivery=delivery,
            cpt_code=cpt_code,
            created_at=now,
        )
    directory_card_refresh(therapist=profile)
    availability_summary_refresh(therapist=profile, now=now)
    return session_type


@transaction.atomic
def session_type_update(
    *, session_type: SessionType, fields: dict[str, Any], now: datetime
) -> SessionType:
    """Change a session type; bookings already made keep the terms copied onto them."""
    for key, value in fields.items():
        setattr(session_type, key, value)
    with unique_or_conflict("A session type with this name exists.", code="session_type_exists"):
        session_type.save(update_fields=list(fields))
    directory_card_refresh(therapist=session_type.therapist)
    if "duration_minutes" in fields:
        availability_summary_refresh(therapist=session_type.therapist, now=now)
    return session_type


@transaction.atomic
def session_type_archive(*, session_type: SessionType, now: datetime) -> None:
    """No longer offered (kept for the bookings that reference it)."""
    SessionType.objects.filter(pk=session_type.pk).update(is_active=False)
    directory_card_refresh(therapist=session_type.therapist)
    availability_summary_refresh(therapist=session_type.therapist, now=now)
