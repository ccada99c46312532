"""Video room writes: the window and joining (docs/video.md, "Rooms" and "Join").

Joining is the one way into a room: it admits the booking's client or therapist while the
room's window is open, creates the room on the first join, and hands out a room token for the
socket plus the ICE servers (``video/turn.py``). Sockets (``video/signalling.py``) change a
room's live state afterwards, under the same locks (``video/locks.py``).

Auditing: a join is ``video.room.joined`` with the booking as the resource and the client as
the patient, written in the join's transaction. A refusal is ``video.room.join_denied``
(outcome ``denied``, the refusal's code as ``reason``): with a ``request`` the caller is an
``AuditedMixin`` view, which records it once the request's transaction has rolled back
(``video.views``); without one it is written and committed here before the refusal is raised.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from api.compiled import CompiledRead, update_row
from api.errors import ConflictError, DomainError, ForbiddenError, NotFoundError
from api.models import User
from audit.models import Outcome
from audit.services import audit_access, audit_record
from scheduling import selectors as scheduling_selectors
from scheduling.bookings.rules import licence_day
from scheduling.models import Booking, BookingStatus, Delivery
from video import locks, tokens, turn
from video.models import Participant, ParticipantRole, PresenceState, Room, RoomMode

JOINED = "video.room.joined"
JOIN_DENIED = "video.room.join_denied"
BOOKING_RESOURCE = "scheduling.booking"

# The deliveries that have a room, and the mode the room starts in.
_MODES = {Delivery.VIDEO: RoomMode.VIDEO, Delivery.AUDIO: RoomMode.AUDIO}


# --- Refusals ---------------------------------------------------------------------------------


class BookingNotFound(NotFoundError):
    """No such booking, or not the caller's: the same answer (VID-01)."""

    code = "booking_not_found"
    default_detail = "No such booking."


class NoVideo(ConflictError):
    code = "no_video"
    default_detail = "This session is in person: it has no video room."


class BookingNotConfirmed(ConflictError):
    code = "booking_not_confirmed"
    default_detail = "The session is not confirmed."


class RoomNotOpen(ConflictError):
    code = "room_not_open"

    def __init__(self, opens_at: datetime):
        super().__init__("The room is not open yet.", extra={"opens_at": _iso(opens_at)})
        self.opens_at = opens_at


class RoomClosed(ConflictError):
    code = "room_closed"
    default_detail = "The room is closed."


class NotLicensedInJurisdiction(ForbiddenError):
    code = "not_licensed_in_jurisdiction"
    default_detail = "Your therapist is not licensed where you are today."


# --- Results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JoinResult:
    room: Room
    participant: Participant
    token: str
    expires_at: datetime  # the token's exp
    ice_servers: list[dict[str, Any]]
    window: tuple[datetime, datetime]  # (opens_at, closes_at)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- The window -------------------------------------------------------------------------------


def room_window(*, booking: Booking) -> tuple[datetime, datetime]:
    """When the booking's room may be joined: ``VIDEO_ROOM_OPENS_MINUTES_BEFORE`` before the
    session's start to ``VIDEO_ROOM_GRACE_MINUTES`` after its end (``[opens_at, closes_at)``)."""
    return (
        booking.start - timedelta(minutes=settings.VIDEO_ROOM_OPENS_MINUTES_BEFORE),
        booking.end + timedelta(minutes=settings.VIDEO_ROOM_GRACE_MINUTES),
    )


# --- Joining ----------------------------------------------------------------------------------


def room_join(
    *,
    booking_id: uuid.UUID,
    user: User,
    jurisdiction: str = "",
    request: HttpRequest | None = None,
    now: datetime,
) -> JoinResult:
    """Admit ``user`` to the room of booking ``booking_id`` (VID-01, VID-08).

    Checked in this order, under the booking's lock: the booking exists and ``user`` is its
    client or its therapist (else ``BookingNotFound``, the same for both); it has a room
    (video or audio delivery, else ``NoVideo``); it is confirmed; ``now`` is inside the window
    (``RoomNotOpen`` with ``opens_at``, ``RoomClosed`` after it); the room has not ended
    (``RoomClosed``); for the client, the therapist holds a current licence in
    ``jurisdiction`` (where the client is now) on the session's licence day, the booking
    rule (``NotLicensedInJurisdiction``). A refusal writes nothing but its audit event.

    Then the room is created on the first join (its mode the delivery's), the participant on
    their first join; every join gives the participant a new token id (older room tokens stop
    opening sockets) and brings someone who had left for good back (``away``: they connect
    again with the new token). The token expires after ``VIDEO_TOKEN_TTL_SECONDS`` and never
    past the window's end; the TURN credentials expire at the window's end.
    """
    # Inside a view's request transaction, no savepoint: a refusal comes back as a value having
    # written nothing, and an error rolls the request back whole.
    with transaction.atomic(savepoint=False):
        outcome = _room_join(
            booking_id=booking_id,
            user=user,
            jurisdiction=jurisdiction,
            request=request,
            now=now,
        )
    if isinstance(outcome, JoinResult):
        return outcome
    if request is None:  # no AuditedMixin view around: the refusal is recorded here
        _join_denied(booking_id=booking_id, user=user, refusal=outcome)
    raise outcome


def _join_denied(*, booking_id: uuid.UUID, user: User, refusal: DomainError) -> None:
    client_id = Booking.objects.filter(pk=booking_id).values_list("client_id", flat=True).first()
    with transaction.atomic():
        audit_record(
            action=JOIN_DENIED,
            outcome=Outcome.DENIED,
            actor=user,
            resource_type=BOOKING_RESOURCE,
            resource_id=str(booking_id),
            patient_id=client_id,
            details={"reason": refusal.code, "status": refusal.status_code},
        )


def _refusal(*, booking: Booking | None, user: User, now: datetime) -> DomainError | None:
    """Why ``user`` may not join ``booking``'s room now (the checks up to the room's own)."""
    if booking is None or user.pk not in (booking.client_id, booking.therapist.user_id):
        return BookingNotFound()
    if booking.session_type.delivery not in _MODES:
        return NoVideo()
    if booking.status != BookingStatus.CONFIRMED:
        return BookingNotConfirmed()
    opens_at, closes_at = room_window(booking=booking)
    if now < opens_at:
        return RoomNotOpen(opens_at)
    if now >= closes_at:
        return RoomClosed()
    return None


def _room_join(
    *,
    booking_id: uuid.UUID,
    user: User,
    jurisdiction: str,
    request: HttpRequest | None,
    now: datetime,
) -> JoinResult | DomainError:
    """``room_join`` under its locks: the result, or why not (having written nothing)."""
    booking = locks.booking_lock(booking_id=booking_id)
    refusal = _refusal(booking=booking, user=user, now=now)
    if refusal is not None:
        return refusal
    assert booking is not None
    room = locks.room_lock_of_booking(booking_id=booking.pk)
    if room is not None and room.ended_at is not None:
        return RoomClosed()
    is_therapist = user.pk == booking.therapist.user_id
    if not is_therapist and not (
        jurisdiction
        and scheduling_selectors.therapist_is_licensed_in(
            therapist=booking.therapist,
            jurisdiction=jurisdiction,
            today=licence_day(start=booking.start, now=now),
        )
    ):
        return NotLicensedInJurisdiction()

    if room is None:  # the first join (the booking's lock keeps a second one out)
        room = Room.objects.create(
            booking=booking, mode=_MODES[Delivery(booking.session_type.delivery)], created_at=now
        )
    jti = uuid.uuid4()
    participant = _participant_joined(
        room=room, user=user, is_therapist=is_therapist, jti=jti, now=now
    )
    opens_at, closes_at = room_window(booking=booking)
    token = tokens.room_token_mint(
        user_id=user.pk,
        room_id=room.pk,
        participant_id=participant.pk,
        role=participant.role,
        jti=jti,
        now=now,
        not_after=closes_at,
    )
    exp = min(int(now.timestamp()) + settings.VIDEO_TOKEN_TTL_SECONDS, int(closes_at.timestamp()))
    details = {"role": participant.role, "room": str(room.pk), "mode": room.mode}
    if request is not None:  # joins the AuditedMixin view's batch (its user is the actor)
        audit_access(obj=booking, action=JOINED, details=details)
    else:
        audit_access(obj=booking, action=JOINED, actor=user, details=details)
    return JoinResult(
        room=room,
        participant=participant,
        token=token,
        expires_at=datetime.fromtimestamp(exp, UTC),
        ice_servers=turn.ice_servers(expires_at=closes_at),
        window=(opens_at, closes_at),
    )


def _participant_of(*, room_id: uuid.UUID, user_id: uuid.UUID) -> QuerySet[Participant]:
    return Participant.objects.filter(room_id=room_id, user_id=user_id)


# Read on every join, under the room's lock (docs/adr/0004-compiled-statements.md).
_PARTICIPANT_OF = CompiledRead(_participant_of)


def _participant_joined(
    *, room: Room, user: User, is_therapist: bool, jti: uuid.UUID, now: datetime
) -> Participant:
    """The participant row of ``user`` in the locked ``room``, created or given token ``jti``
    (and back from having left, if they had)."""
    participant = _PARTICIPANT_OF.first(room_id=room.pk, user_id=user.pk)
    if participant is None:
        return Participant.objects.create(
            room=room,
            user=user,
            role=ParticipantRole.THERAPIST if is_therapist else ParticipantRole.CLIENT,
            state=PresenceState.AWAY,
            token_jti=str(jti),
            created_at=now,
        )
    changes: dict[str, Any] = {"token_jti": str(jti)}
    if participant.state == PresenceState.LEFT:
        changes.update(state=PresenceState.AWAY, left_at=None)
    update_row(participant, **changes)
    return participant
