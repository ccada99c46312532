"""Row locks for video writes, always taken in one order: the booking row, then the room row,
then participant rows (by primary key).

A room's live state (who is waiting, in the call, which token is current) lives on its
participant rows and changes only with the room row locked, so two sockets or a join and a
socket never interleave their read-modify-write. A join locks the booking first
(``booking_lock``: the booking's status cannot change under it, and two first joins create
one room), then the room. Never lock a booking while holding a room:
that would invert the order. ``FOR NO KEY UPDATE`` (``no_key=True``) as in scheduling: inserts
that merely reference the room (a new participant) are not blocked by it. On SQLite these are
no-ops (a writing transaction holds the database's write lock).
"""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from api.compiled import CompiledRead
from scheduling.models import Booking
from video.models import Participant, Room


def _room(*, room_id: uuid.UUID) -> QuerySet[Room]:
    return (
        Room.objects.select_for_update(no_key=True, of=("self",))
        .select_related("booking__therapist")
        .filter(pk=room_id)
    )


def _room_of_participant(*, participant_id: uuid.UUID) -> QuerySet[Room]:
    return (
        Room.objects.select_for_update(no_key=True, of=("self",))
        .select_related("booking__therapist")
        .filter(participants__pk=participant_id)
    )


def _room_of_booking(*, booking_id: uuid.UUID) -> QuerySet[Room]:
    return Room.objects.select_for_update(no_key=True, of=("self",)).filter(booking_id=booking_id)


def _participants(*, room_id: uuid.UUID) -> QuerySet[Participant]:
    return (
        Participant.objects.select_for_update(no_key=True, of=("self",))
        .select_related("user")
        .filter(room_id=room_id)
        .order_by("pk")
    )


def _booking(*, booking_id: uuid.UUID) -> QuerySet[Booking]:
    return (
        Booking.objects.select_for_update(no_key=True, of=("self",))
        .select_related("therapist", "session_type")
        .filter(pk=booking_id)
    )


# Each step of a call's set-up (join, hello, admit) takes two of these locks: built and compiled
# once per database (docs/adr/0004-compiled-statements.md). Each filters on a key: one row at
# most, but the participants'.
_ROOM = CompiledRead(_room)
_ROOM_OF_PARTICIPANT = CompiledRead(_room_of_participant)
_ROOM_OF_BOOKING = CompiledRead(_room_of_booking)
_PARTICIPANTS = CompiledRead(_participants)
_BOOKING = CompiledRead(_booking)


def room_lock(*, room_id: uuid.UUID) -> Room | None:
    """Lock one room row (with its booking and the booking's therapist loaded, unlocked); None
    if there is no such room."""
    return _ROOM.first(room_id=room_id)


def room_lock_of_participant(*, participant_id: uuid.UUID) -> Room | None:
    """``room_lock`` of the room a participant is in, in one statement; None if there is no
    such participant."""
    return _ROOM_OF_PARTICIPANT.first(participant_id=participant_id)


def room_lock_of_booking(*, booking_id: uuid.UUID) -> Room | None:
    """Lock the room of a booking (after the booking, if that is locked too); None if the
    booking has no room yet."""
    return _ROOM_OF_BOOKING.first(booking_id=booking_id)


def participants_lock(*, room_id: uuid.UUID) -> list[Participant]:
    """Lock every participant row of a room (after the room), in primary-key order, each with
    its user loaded (unlocked: the audit's actor, the waiting list's names)."""
    return _PARTICIPANTS.list(room_id=room_id)


def booking_lock(*, booking_id: uuid.UUID) -> Booking | None:
    """Lock a booking row (the first level) with its therapist and session type loaded, for a
    join: its status cannot change meanwhile, and two first joins create one room."""
    return _BOOKING.first(booking_id=booking_id)
