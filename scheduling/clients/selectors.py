"""Client profile reads: the client themselves, or a therapist they have had (or have) a
confirmed session with; anyone else gets a 404. Values are decrypted onto ``profile.details``."""

from __future__ import annotations

import uuid

from api.errors import NotFoundError
from api.models import Role, User
from scheduling.clients.services import client_details, phone_index
from scheduling.models import Booking, BookingStatus, ClientProfile

# A therapist sees the profile of clients with a session in one of these states.
RELATIONSHIP = (BookingStatus.CONFIRMED, BookingStatus.COMPLETED, BookingStatus.NO_SHOW)


def _treats(*, therapist_user: User, client_id: uuid.UUID) -> bool:
    return Booking.objects.filter(
        client_id=client_id, therapist__user=therapist_user, status__in=RELATIONSHIP
    ).exists()


def _with_details(profile: ClientProfile) -> ClientProfile:
    profile.details = client_details(profile)  # type: ignore[attr-defined]
    return profile


def client_profile_for(*, client_id: uuid.UUID, viewer: User) -> ClientProfile:
    allowed = viewer.pk == client_id or (
        viewer.role == Role.THERAPIST and _treats(therapist_user=viewer, client_id=client_id)
    )
    profile = (
        ClientProfile.objects.select_related("user").filter(user_id=client_id).first()
        if allowed
        else None
    )
    if profile is None:
        raise NotFoundError("No such client profile.")
    return _with_details(profile)


def own_client_profile(*, user: User) -> ClientProfile:
    return client_profile_for(client_id=user.pk, viewer=user)


def therapist_clients_with_phone(*, therapist_user: User, phone: str) -> list[ClientProfile]:
    """The therapist's own clients whose phone is ``phone`` (equality on the blind index:
    no plaintext phone is stored or indexed, and other therapists' clients never match)."""
    clients = Booking.objects.filter(
        therapist__user=therapist_user, status__in=RELATIONSHIP
    ).values("client_id")
    return [
        _with_details(p)
        for p in ClientProfile.objects.select_related("user")
        .filter(phone_index=phone_index(phone), user_id__in=clients)
        .order_by("id")
    ]
