"""Row locks for booking writes, always taken in one order: the client's user row, then the
therapist's profile row, then booking rows (each kind by primary key).

Every booking write that can change what is busy takes the therapist's lock first, so two
writers for one therapist run one after the other and each sees the other's committed rows
(PostgreSQL READ COMMITTED: every statement after the lock takes a fresh snapshot). The client's
lock does the same for the client's own overlapping bookings across therapists. ``FOR NO KEY
UPDATE`` (``no_key=True``) serialises lockers without blocking inserts that merely reference the
rows (foreign keys take ``FOR KEY SHARE``). On SQLite these are no-ops: a transaction takes the
database's write lock at BEGIN (``transaction_mode=IMMEDIATE``), which serialises all writers.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet

from api.models import User
from scheduling.models import Booking, SessionType, TherapistProfile


def lock_client(*, client_id: uuid.UUID) -> None:
    """Lock the client's user row (the first level)."""
    list(User.objects.select_for_update(no_key=True).filter(pk=client_id).values_list("pk"))


def lock_parties(*, client_id: uuid.UUID, therapist_id: uuid.UUID) -> TherapistProfile | None:
    """Lock the client, then the therapist; the therapist's profile, with its cancellation
    policy loaded (None if there is no such therapist)."""
    lock_client(client_id=client_id)
    return (
        TherapistProfile.objects.select_for_update(no_key=True, of=("self",))
        .select_related("cancellation_policy")
        .filter(pk=therapist_id)
        .first()
    )


def therapist_through_session_type_locked(
    *, therapist_id: uuid.UUID, session_type_id: uuid.UUID, **annotations: Any
) -> QuerySet[SessionType]:
    """The statement that locks a therapist (the second level) and reads their active session
    type ``session_type_id`` with the therapist's profile and cancellation policy loaded,
    annotated with ``annotations`` (no row when there is no such active session type: the
    caller then finds out which of the two is missing the usual way).

    The annotations are evaluated in the statement's snapshot, which on PostgreSQL may predate
    the moment the therapist's lock was granted: only facts the lock does not guard belong in
    them (the caller's docstring says why each one does)."""
    return (
        SessionType.objects.select_for_update(no_key=True, of=("therapist",))
        .select_related("therapist__cancellation_policy")
        .filter(pk=session_type_id, therapist_id=therapist_id, is_active=True)
        .annotate(**annotations)
    )


def lock_therapist(*, therapist_id: uuid.UUID) -> TherapistProfile | None:
    """Lock a therapist alone (for work that never touches a client's other bookings)."""
    return TherapistProfile.objects.select_for_update(no_key=True).filter(pk=therapist_id).first()


def lock_booking(*, booking_id: uuid.UUID) -> Booking | None:
    """Lock one booking row, after its parties (see ``lock_booking_and_parties``) or alone when
    the change cannot make anything busy (confirming a hold)."""
    return (
        Booking.objects.select_for_update(no_key=True, of=("self",))
        .select_related("therapist", "client")
        .filter(pk=booking_id)
        .first()
    )


def lock_booking_and_parties(*, booking_id: uuid.UUID) -> Booking | None:
    """Lock a booking's client, therapist and then the booking itself (the fixed order).

    The parties of a booking never change, so reading them before taking the locks is safe.
    """
    parties = Booking.objects.filter(pk=booking_id).values_list("client_id", "therapist_id").first()
    if parties is None:
        return None
    lock_parties(client_id=parties[0], therapist_id=parties[1])
    return lock_booking(booking_id=booking_id)
