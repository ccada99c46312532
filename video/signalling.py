"""What the signalling socket changes: synchronous, transactional services (docs/video.md).

The consumer (``video.consumers``) calls these through ``database_sync_to_async`` and then
carries out the ``Effect`` list each returns (after the commit): ``Send`` one message to one
participant's socket (its ``channel_name``), ``Broadcast`` to every socket of the room (the
channel-layer group ``video.room.<room_id>``), ``TherapistChanged`` to waiting clients in the
therapist's other rooms (``video.therapist.<user_id>``). The database is the truth: every state
change happens with the room row locked (``video.locks``), so two sockets (in any processes)
never interleave their read-modify-write.

Refusals: ``AttachRefused`` (the socket closes with its code, learning nothing) and
``SignalRefused`` (an ``error`` message; nothing changed, nothing relayed).

Audit (VID-10): connect/reconnect, admit, deny, note, leave and end, with the booking as the
resource and its client as the patient. Details hold ids, roles and states, a note's length;
never an SDP, a candidate, an address or a note's text.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction

from api.compiled import update_row
from api.tokens import TokenError
from audit.services import audit_record
from video import locks, wake
from video.intervals import interval_open, intervals_close
from video.models import (
    AttendanceKind,
    EndReason,
    IntervalEnd,
    Participant,
    ParticipantRole,
    PresenceState,
    Room,
    RoomMode,
    WebProcess,
)
from video.protocol import Close, server_message
from video.services import room_window
from video.tokens import room_token_decode
from video.wake import wake_after_commit

__all__ = [
    "AttachRefused",
    "Attached",
    "Broadcast",
    "Effect",
    "Send",
    "SignalRefused",
    "TherapistChanged",
    "participant_admit",
    "participant_attach",
    "participant_connection",
    "participant_deny",
    "participant_detach",
    "participant_detach_lost",
    "participant_leave",
    "participant_media",
    "participant_note",
    "room_end",
    "room_group",
    "room_mode_set",
    "room_notes_set",
    "room_restart",
    "room_window_close",
    "therapist_group",
    "waiting_status",
]

BOOKING = "scheduling.booking"
THERAPIST = ParticipantRole.THERAPIST
CONFIRMED = "confirmed"


def room_group(room_id: uuid.UUID | str) -> str:
    return f"video.room.{room_id}"


def therapist_group(user_id: uuid.UUID | str) -> str:
    return f"video.therapist.{user_id}"


# --- effects -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """One message (and maybe a close code after it) to one participant's socket."""

    channel: str
    participant: str
    message: dict[str, Any] | None
    close: int | None = None


@dataclass(frozen=True)
class Broadcast:
    """One message (and maybe a close) to every socket in the room."""

    room_id: str
    message: dict[str, Any]
    close: int | None = None


@dataclass(frozen=True)
class TherapistChanged:
    """The therapist's presence changed in ``room_id``: waiting clients of their other rooms
    re-read it (those of ``room_id`` were told already)."""

    user_id: str
    room_id: str


Effect = Send | Broadcast | TherapistChanged


class AttachRefused(Exception):
    """A hello refused: the socket closes with ``code`` and is told nothing else."""

    def __init__(self, code: Close, reason: str) -> None:
        super().__init__(reason)  # for tests and logs: never sent
        self.code = code


class SignalRefused(Exception):
    """A message refused: an ``error`` with this code; nothing changed, nothing relayed."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Attached:
    participant_id: uuid.UUID
    user_id: uuid.UUID
    role: str
    room_id: uuid.UUID
    therapist_user_id: uuid.UUID
    closes_at: datetime
    effects: list[Effect] = field(default_factory=list)


# --- helpers -------------------------------------------------------------------------------


def _resume_hash(token: str) -> str:
    key = str(settings.HMAC_KEY).encode()
    return hmac.new(key, b"video-resume:" + token.encode(), hashlib.sha256).hexdigest()


def _audit(
    action: str,
    *,
    room: Room,
    participant: Participant,
    actor: Any,
    actor_label: str = "",
    **details: Any,
) -> None:
    audit_record(
        action=action,
        actor=actor,
        actor_label=actor_label,
        resource_type=BOOKING,
        resource_id=str(room.booking_id),
        patient_id=room.booking.client_id,
        details={
            "room": str(room.pk),
            "participant": str(participant.pk),
            "role": participant.role,
            **details,
        },
    )


def _connected(p: Participant) -> bool:
    return bool(p.channel_name)


def _therapist_of(people: list[Participant]) -> Participant | None:
    return next((p for p in people if p.role == THERAPIST), None)


def _therapist_status(room: Room, people: list[Participant]) -> str:
    therapist = _therapist_of(people)
    if therapist is not None and therapist.state == PresenceState.IN_CALL and _connected(therapist):
        return "ready"
    busy = (
        Participant.objects.filter(
            user_id=room.booking.therapist.user_id,
            state=PresenceState.IN_CALL,
            role=THERAPIST,
        )
        .exclude(room_id=room.pk)
        .exclude(channel_name="")
        .exists()
    )
    return "in_another_session" if busy else "not_arrived"


def _waiting_message(room: Room, people: list[Participant]) -> dict[str, Any]:
    return server_message(
        "waiting", therapist=_therapist_status(room, people), notes_allowed=room.allow_notes
    )


def _to_waiting(room: Room, people: list[Participant]) -> list[Effect]:
    """``waiting`` to every connected waiting client."""
    waiting = [p for p in people if p.state == PresenceState.WAITING and _connected(p)]
    if not waiting:
        return []
    message = _waiting_message(room, people)
    return [Send(p.channel_name, str(p.pk), message) for p in waiting]


def _waiting_list(people: list[Participant]) -> list[Effect]:
    """``waiting-list`` to the therapist, if connected."""
    therapist = _therapist_of(people)
    if therapist is None or not _connected(therapist):
        return []
    waiting = sorted(
        (p for p in people if p.state == PresenceState.WAITING and _connected(p)),
        key=lambda p: (p.waiting_since or p.created_at, str(p.pk)),
    )
    entries = [
        {
            "participant": str(p.pk),
            "role": p.role,
            "display_name": p.user.full_name,
            "since": (p.waiting_since or p.created_at).isoformat(),
        }
        for p in waiting
    ]
    message = server_message("waiting-list", waiting=entries)
    return [Send(therapist.channel_name, str(therapist.pk), message)]


def _in_call(people: list[Participant], *, but: Participant | None = None) -> list[Participant]:
    return [
        p
        for p in people
        if p.state == PresenceState.IN_CALL and _connected(p) and (but is None or p.pk != but.pk)
    ]


def _new_round(room: Room, people: list[Participant], *, restart: bool = False) -> list[Effect]:
    """When the therapist and someone else are both in the call and connected: a new round
    (``Room.round`` + 1), and ``peer-joined`` to both; the therapist offers.

    ``restart``: the round replaces a failed one between the same sockets (``restart``). When
    both clients said they restart ICE, ``ice_restart`` tells both to keep the peer connection
    they have with each other and restart ICE on it; otherwise (a new socket, an admission, an
    aiortc peer that builds a new peer connection with a new DTLS certificate) both build a
    new one."""
    therapist = _therapist_of(people)
    if therapist is None or therapist not in _in_call(people):
        return []
    others = _in_call(people, but=therapist)
    if not others:
        return []
    update_row(room, round=room.round + 1)  # the room row is locked
    effects: list[Effect] = []
    for other in others:
        ice_restart = restart and therapist.ice_restart and other.ice_restart
        effects.append(
            Send(
                therapist.channel_name,
                str(therapist.pk),
                server_message(
                    "peer-joined",
                    peer={"participant": str(other.pk), "role": other.role},
                    round=room.round,
                    offerer=True,
                    ice_restart=ice_restart,
                ),
            )
        )
        effects.append(
            Send(
                other.channel_name,
                str(other.pk),
                server_message(
                    "peer-joined",
                    peer={"participant": str(therapist.pk), "role": therapist.role},
                    round=room.round,
                    offerer=False,
                    ice_restart=ice_restart,
                ),
            )
        )
    return effects


def _peer_left(people: list[Participant], gone: Participant, reason: str) -> list[Effect]:
    message = server_message("peer-left", participant=str(gone.pk), reason=reason)
    return [Send(p.channel_name, str(p.pk), message) for p in _in_call(people, but=gone)]


@dataclass
class _Locked:
    room: Room
    people: list[Participant]
    me: Participant


def _lock(*, participant_id: uuid.UUID) -> _Locked:
    """Lock the participant's room, then its participants; ``SignalRefused`` if gone."""
    room = locks.room_lock_of_participant(participant_id=participant_id)
    if room is None:
        raise SignalRefused("forbidden", "You are not in this room.")
    people = locks.participants_lock(room_id=room.pk)
    me = next((p for p in people if p.pk == participant_id), None)
    if me is None:
        raise SignalRefused("forbidden", "You are not in this room.")
    return _Locked(room, people, me)


def _live(locked: _Locked, channel_name: str) -> None:
    """The socket still holds the participant's place and the room is open."""
    if locked.me.channel_name != channel_name or locked.me.state == PresenceState.LEFT:
        raise SignalRefused("forbidden", "This socket no longer holds your place.")
    if locked.room.ended_at is not None:
        raise SignalRefused("forbidden", "The room has ended.")


def _user(participant: Participant) -> Any:
    return participant.user


# --- hello ---------------------------------------------------------------------------------


def participant_attach(
    *,
    room_id: uuid.UUID,
    token: str,
    resume: str | None,
    channel_name: str,
    process_id: uuid.UUID,
    now: datetime,
    ice_restart: bool = False,
) -> tuple[Attached, str]:
    """A ``hello``: the room token (and maybe a resume token) give this socket, served by the
    web process ``process_id`` (``video.liveness``), the participant's place (and
    ``ice_restart``, whether its client restarts ICE in a restart round). Returns what the
    socket is and the new resume token; the ``joined`` message is the first ``Send`` to this
    socket. ``AttachRefused`` otherwise."""
    if not token:
        raise AttachRefused(Close.UNAUTHENTICATED, "no token")
    try:
        claims = room_token_decode(token, now=now)
    except TokenError as exc:
        raise AttachRefused(Close.UNAUTHENTICATED, "invalid token") from exc
    if claims.room_id != room_id:
        raise AttachRefused(Close.FORBIDDEN, "token for another room")
    with transaction.atomic():
        room = locks.room_lock(room_id=room_id)
        if room is None:
            raise AttachRefused(Close.FORBIDDEN, "no such room")
        people = locks.participants_lock(room_id=room.pk)
        me = next((p for p in people if p.pk == claims.participant_id), None)
        if me is None or me.user_id != claims.user_id or me.role != claims.role:
            raise AttachRefused(Close.FORBIDDEN, "token for another participant")
        if me.state == PresenceState.LEFT or not me.token_jti:
            raise AttachRefused(Close.FORBIDDEN, "spent token")
        if not hmac.compare_digest(me.token_jti, claims.jti):
            raise AttachRefused(Close.FORBIDDEN, "replaced token")
        booking = room.booking
        opens_at, closes_at = room_window(booking=booking)
        if room.ended_at is not None or booking.status != CONFIRMED or now >= closes_at:
            raise AttachRefused(Close.ENDED, "room closed")
        if now < opens_at:
            raise AttachRefused(Close.FORBIDDEN, "room not open")

        effects: list[Effect] = []
        # Intervals are open only while a socket holds the place: every path that clears
        # ``channel_name`` (detach, deny, leave, the lost-process sweep) closes them with it.
        held = bool(me.channel_name)
        replaced = me.channel_name if held and me.channel_name != channel_name else ""
        was_in_call = me.state == PresenceState.IN_CALL and replaced
        if replaced:
            effects.append(Send(replaced, str(me.pk), None, close=Close.REPLACED))
            if was_in_call:
                effects.extend(_peer_left(people, me, "disconnected"))
        resumed = bool(
            resume
            and me.resume_hash
            and hmac.compare_digest(me.resume_hash, _resume_hash(resume))
            and (me.resume_until is None or me.resume_until > now)
        )
        if me.role == THERAPIST:
            me.state = PresenceState.IN_CALL
            me.admitted_at = me.admitted_at or now
        elif resumed and me.admitted_at is not None:
            me.state = PresenceState.IN_CALL
        else:
            me.state = PresenceState.WAITING
            me.admitted_at = None
            me.waiting_since = now
        new_resume = secrets.token_urlsafe(32)
        update_row(
            me,
            state=me.state,
            admitted_at=me.admitted_at,
            waiting_since=me.waiting_since,
            resume_hash=_resume_hash(new_resume),
            resume_until=None,
            channel_name=channel_name,
            process_id=process_id,
            ice_restart=ice_restart,
        )
        if held:
            intervals_close(participant=me, reason=IntervalEnd.REPLACED, now=now)
        interval_open(participant=me, kind=AttendanceKind.PRESENT, now=now)
        if me.state == PresenceState.IN_CALL:
            interval_open(participant=me, kind=AttendanceKind.IN_CALL, now=now)
        reconnect = bool(replaced) or resumed
        _audit(
            "video.room.reconnected" if reconnect else "video.room.connected",
            room=room,
            participant=me,
            actor=_user(me),
            state=me.state,
            resumed=resumed,
        )
        peers = (
            [
                {"participant": str(p.pk), "role": p.role, "state": p.state}
                for p in _in_call(people, but=me)
            ]
            if me.state == PresenceState.IN_CALL
            else []
        )
        joined = server_message(
            "joined",
            participant=str(me.pk),
            role=me.role,
            state=me.state,
            resume=new_resume,
            mode=room.mode,
            peers=peers,
        )
        effects.append(Send(channel_name, str(me.pk), joined))
        if me.state == PresenceState.WAITING:
            effects.append(Send(channel_name, str(me.pk), _waiting_message(room, people)))
            effects.extend(_waiting_list(people))
        elif me.role == THERAPIST:
            effects.extend(_waiting_list(people))
            effects.extend(_to_waiting(room, people))
            for waiting in (p for p in people if p.state == PresenceState.WAITING):
                wake_after_commit(
                    user_id=waiting.user_id, room_id=room.pk, kind=wake.THERAPIST_READY
                )
            effects.extend(_new_round(room, people))
            effects.append(TherapistChanged(str(me.user_id), str(room.pk)))
        else:
            effects.extend(_new_round(room, people))
        attached = Attached(
            participant_id=me.pk,
            user_id=me.user_id,
            role=me.role,
            room_id=room.pk,
            therapist_user_id=booking.therapist.user_id,
            closes_at=closes_at,
            effects=effects,
        )
        return attached, new_resume


def participant_detach(
    *, participant_id: uuid.UUID, channel_name: str, now: datetime
) -> list[Effect]:
    """The socket closed: the participant is away (its place kept for ``VIDEO_RESUME_SECONDS``
    with its resume token). Nothing when another socket has taken the place since."""
    with transaction.atomic():
        try:
            locked = _lock(participant_id=participant_id)
        except SignalRefused:
            return []
        me = locked.me
        if me.channel_name != channel_name or me.state == PresenceState.LEFT:
            return []
        return _detach(locked, at=now, now=now, actor=_user(me))


def participant_detach_lost(
    *, participant_id: uuid.UUID, process_id: uuid.UUID, dead_before: datetime, now: datetime
) -> list[Effect] | None:
    """The web process serving the participant's socket is lost: its last beat is older than
    ``dead_before`` (``video.liveness``). Detached as ``participant_detach`` would have done
    it, by the system, with its intervals closed at that last beat (the process vouched for
    the socket until then, not since); the place is kept from ``now``. None (nothing done)
    when its place is held by another process's socket, or the process has beaten since."""
    with transaction.atomic():
        try:
            locked = _lock(participant_id=participant_id)
        except SignalRefused:
            return None
        me = locked.me
        if me.process_id != process_id or not me.channel_name or me.state == PresenceState.LEFT:
            return None
        last_beat = (
            WebProcess.objects.filter(pk=process_id, beat_at__lt=dead_before)
            .values_list("beat_at", flat=True)
            .first()
        )
        if last_beat is None:
            return None
        return _detach(
            locked,
            at=last_beat,
            now=now,
            actor=None,
            actor_label="system",
            cause="process_lost",
            as_of=last_beat.isoformat(),
        )


def _detach(
    locked: _Locked, *, at: datetime, now: datetime, actor: Any, **audit: Any
) -> list[Effect]:
    """The participant's socket is gone as of ``at``: away, its intervals closed then, its
    place kept for ``VIDEO_RESUME_SECONDS`` from ``now``; the others told."""
    room, people, me = locked.room, locked.people, locked.me
    was = me.state
    me.state = PresenceState.AWAY
    me.channel_name = ""
    me.process = None
    me.resume_until = now + timedelta(seconds=settings.VIDEO_RESUME_SECONDS)
    me.save(update_fields=["state", "channel_name", "process", "resume_until"])
    intervals_close(participant=me, reason=IntervalEnd.DETACHED, now=at)
    _audit("video.room.disconnected", room=room, participant=me, actor=actor, was=was, **audit)
    return _told_of_going(room, people, me, was=was, why="disconnected")


def _told_of_going(
    room: Room, people: list[Participant], me: Participant, *, was: str, why: str
) -> list[Effect]:
    """Who is told that ``me`` (who ``was`` in that state) has gone, ``why``: the others in the
    call (``peer-left``); when the therapist goes, the waiting clients (and the therapist's other
    rooms, whose status of them changes); when a waiting client goes, the therapist's list."""
    effects: list[Effect] = []
    if was == PresenceState.IN_CALL:
        effects.extend(_peer_left(people, me, why))
    if me.role == THERAPIST:
        effects.extend(_to_waiting(room, people))
        effects.append(TherapistChanged(str(me.user_id), str(room.pk)))
    elif was == PresenceState.WAITING:
        effects.extend(_waiting_list(people))
    return effects


# --- the waiting room ----------------------------------------------------------------------


def _therapist_acting(locked: _Locked, channel_name: str) -> None:
    _live(locked, channel_name)
    if locked.me.role != THERAPIST:
        raise SignalRefused("forbidden", "Only the therapist does this.")


def _waiting_target(locked: _Locked, target_id: uuid.UUID) -> Participant:
    target = next((p for p in locked.people if p.pk == target_id), None)
    if target is None or target.state != PresenceState.WAITING or not _connected(target):
        raise SignalRefused("not_waiting", "Nobody by that id is waiting.")
    return target


def participant_admit(
    *, participant_id: uuid.UUID, channel_name: str, target_id: uuid.UUID, now: datetime
) -> list[Effect]:
    """The therapist admits a waiting client: in the call, and a new round."""
    with transaction.atomic():
        locked = _lock(participant_id=participant_id)
        _therapist_acting(locked, channel_name)
        target = _waiting_target(locked, target_id)
        update_row(target, state=PresenceState.IN_CALL, admitted_at=now)
        interval_open(participant=target, kind=AttendanceKind.IN_CALL, now=now)
        _audit(
            "video.room.admitted",
            room=locked.room,
            participant=target,
            actor=_user(locked.me),
        )
        wake_after_commit(user_id=target.user_id, room_id=locked.room.pk, kind=wake.ADMITTED)
        effects: list[Effect] = [
            Send(target.channel_name, str(target.pk), server_message("admitted"))
        ]
        effects.extend(_waiting_list(locked.people))
        effects.extend(_new_round(locked.room, locked.people))
        return effects


def participant_deny(
    *, participant_id: uuid.UUID, channel_name: str, target_id: uuid.UUID, now: datetime
) -> list[Effect]:
    """The therapist turns a waiting client away: ``denied``, close 4403; the room token is
    spent (a new join over REST gives another)."""
    with transaction.atomic():
        locked = _lock(participant_id=participant_id)
        _therapist_acting(locked, channel_name)
        target = _waiting_target(locked, target_id)
        channel = target.channel_name
        target.state = PresenceState.AWAY
        target.channel_name = ""
        target.process = None
        target.token_jti = ""
        target.resume_hash = ""
        target.resume_until = None
        target.admitted_at = None
        target.save(
            update_fields=[
                "state",
                "channel_name",
                "process",
                "token_jti",
                "resume_hash",
                "resume_until",
                "admitted_at",
            ]
        )
        intervals_close(participant=target, reason=IntervalEnd.DENIED, now=now)
        _audit("video.room.denied", room=locked.room, participant=target, actor=_user(locked.me))
        effects: list[Effect] = [
            Send(channel, str(target.pk), server_message("denied"), close=Close.FORBIDDEN)
        ]
        effects.extend(_waiting_list(locked.people))
        return effects


def participant_note(
    *, participant_id: uuid.UUID, channel_name: str, text: str, now: datetime
) -> list[Effect]:
    """A waiting client's note to the therapist: only if notes are allowed, one per
    ``VIDEO_WAITING_NOTE_INTERVAL_SECONDS``, audited by its length."""
    with transaction.atomic():
        locked = _lock(participant_id=participant_id)
        _live(locked, channel_name)
        room, me = locked.room, locked.me
        if me.role == THERAPIST or me.state != PresenceState.WAITING:
            raise SignalRefused("forbidden", "Notes are for the waiting room.")
        if not room.allow_notes:
            raise SignalRefused("notes_off", "The therapist does not take notes now.")
        interval = timedelta(seconds=settings.VIDEO_WAITING_NOTE_INTERVAL_SECONDS)
        if me.last_note_at is not None and now < me.last_note_at + interval:
            raise SignalRefused("rate_limited", "One note at a time: try again later.")
        therapist = _therapist_of(locked.people)
        if therapist is None or not _connected(therapist):
            raise SignalRefused("therapist_absent", "The therapist is not here yet.")
        me.last_note_at = now
        me.save(update_fields=["last_note_at"])
        _audit("video.room.note", room=room, participant=me, actor=_user(me), length=len(text))
        message = server_message("note", participant=str(me.pk), text=text)
        return [Send(therapist.channel_name, str(therapist.pk), message)]


def room_notes_set(
    *, participant_id: uuid.UUID, channel_name: str, allow: bool, now: datetime
) -> list[Effect]:
    """The therapist allows or refuses waiting-room notes."""
    with transaction.atomic():
        locked = _lock(participant_id=participant_id)
        _therapist_acting(locked, channel_name)
        if locked.room.allow_notes != allow:
            locked.room.allow_notes = allow
            locked.room.save(update_fields=["allow_notes"])
        return _to_waiting(locked.room, locked.people)


def waiting_status(*, participant_id: uuid.UUID, channel_name: str) -> list[Effect]:
    """``waiting`` again for a waiting client (the therapist's presence changed elsewhere)."""
    me = (
        Participant.objects.select_related("room__booking__therapist")
        .filter(pk=participant_id, channel_name=channel_name, state=PresenceState.WAITING)
        .first()
    )
    if me is None or me.room.ended_at is not None:
        return []
    people = list(Participant.objects.filter(room_id=me.room_id))
    return [Send(channel_name, str(me.pk), _waiting_message(me.room, people))]


# --- the call ------------------------------------------------------------------------------


def _in_call_check(locked: _Locked, channel_name: str) -> None:
    _live(locked, channel_name)
    if locked.me.state != PresenceState.IN_CALL:
        raise SignalRefused("not_admitted", "Wait to be admitted.")


def room_restart(
    *, participant_id: uuid.UUID, channel_name: str, now: datetime, round: int | None = None
) -> list[Effect]:
    """Either side asks for a new negotiation round (its media path failed: a network change,
    a laptop waking up). With ``round``, the round it wants replaced: when both sides ask at
    once, the first replaces it and the second is ``stale_round`` (already done), so one
    failure makes one new round."""
    with transaction.atomic():
        locked = _lock(participant_id=participant_id)
        _in_call_check(locked, channel_name)
        if round is not None and round != locked.room.round:
            raise SignalRefused("stale_round", f"The current round is {locked.room.round}.")
        effects = _new_round(locked.room, locked.people, restart=True)
        if not effects:
            raise SignalRefused("no_peer", "Nobody else is in the call.")
        return effects


def participant_media(
    *, participant_id: uuid.UUID, channel_name: str, audio: bool, video: bool, now: datetime
) -> list[Effect]:
    """Mute / camera state, told to the others in the call."""
    with transaction.atomic():
        locked = _lock(participant_id=participant_id)
        _in_call_check(locked, channel_name)
        me = locked.me
        me.audio, me.video = audio, video
        me.save(update_fields=["audio", "video"])
        message = server_message("peer-media", participant=str(me.pk), audio=audio, video=video)
        return [Send(p.channel_name, str(p.pk), message) for p in _in_call(locked.people, but=me)]


def participant_connection(
    *, participant_id: uuid.UUID, channel_name: str, state: str, now: datetime
) -> list[Effect]:
    """The client's peer connection is ``connected`` or ``disconnected`` (attendance): a media
    interval opens or closes at ``now``, the server's receipt time. Only from the socket that
    holds the place of someone in the call (``not_admitted`` while waiting); a report that
    changes nothing (connected twice) is accepted and not recorded again. Tells nobody."""
    with transaction.atomic():
        locked = _lock(participant_id=participant_id)
        _in_call_check(locked, channel_name)
        me = locked.me
        if state == "connected":
            changed = interval_open(participant=me, kind=AttendanceKind.MEDIA, now=now)
        else:
            changed = bool(
                intervals_close(
                    participant=me,
                    reason=IntervalEnd.REPORTED,
                    now=now,
                    kinds=(AttendanceKind.MEDIA,),
                )
            )
        if changed:
            _audit(f"video.room.media_{state}", room=locked.room, participant=me, actor=_user(me))
        return []


def room_mode_set(
    *, participant_id: uuid.UUID, channel_name: str, mode: str, now: datetime
) -> list[Effect]:
    """Either side drops the call to audio (or back)."""
    with transaction.atomic():
        locked = _lock(participant_id=participant_id)
        _in_call_check(locked, channel_name)
        room, me = locked.room, locked.me
        room.mode = RoomMode(mode)
        room.save(update_fields=["mode"])
        message = server_message("mode", mode=mode, by=str(me.pk))
        return [Send(p.channel_name, str(p.pk), message) for p in _in_call(locked.people, but=me)]


def participant_leave(
    *, participant_id: uuid.UUID, channel_name: str, now: datetime
) -> list[Effect]:
    """Leave for good: the room token is spent (replayed, it is refused 4403)."""
    with transaction.atomic():
        locked = _lock(participant_id=participant_id)
        _live(locked, channel_name)
        room, people, me = locked.room, locked.people, locked.me
        was = me.state
        _mark_left(me, now)
        _audit("video.room.left", room=room, participant=me, actor=_user(me), was=was)
        effects: list[Effect] = [Send(channel_name, str(me.pk), None, close=1000)]
        return effects + _told_of_going(room, people, me, was=was, why="left")


def _mark_left(p: Participant, now: datetime, reason: IntervalEnd = IntervalEnd.LEFT) -> None:
    """Gone for good: no token opens a socket for it any more, no resume takes its place;
    its attendance intervals close."""
    intervals_close(participant=p, reason=reason, now=now)
    p.state = PresenceState.LEFT
    p.token_jti = p.channel_name = p.resume_hash = ""
    p.process = None
    p.resume_until = None
    p.left_at = now
    fields = [
        "state",
        "token_jti",
        "channel_name",
        "process",
        "resume_hash",
        "resume_until",
        "left_at",
    ]
    p.save(update_fields=fields)


def _end(room: Room, people: list[Participant], reason: str, now: datetime) -> list[Effect]:
    room.ended_at = now
    room.end_reason = reason
    room.save(update_fields=["ended_at", "end_reason"])
    for p in people:
        if p.state != PresenceState.LEFT:
            _mark_left(p, now, IntervalEnd.ENDED)
    effects: list[Effect] = [
        Broadcast(str(room.pk), server_message("ended", reason=reason), close=Close.ENDED)
    ]
    therapist = _therapist_of(people)
    if therapist is not None:
        effects.append(TherapistChanged(str(therapist.user_id), str(room.pk)))
    return effects


def room_end(*, participant_id: uuid.UUID, channel_name: str, now: datetime) -> list[Effect]:
    """The therapist ends the session for everyone: ``ended``, close 4410."""
    with transaction.atomic():
        locked = _lock(participant_id=participant_id)
        _therapist_acting(locked, channel_name)
        effects = _end(locked.room, locked.people, EndReason.ENDED_BY_THERAPIST, now)
        _audit(
            "video.room.ended",
            room=locked.room,
            participant=locked.me,
            actor=_user(locked.me),
            reason=EndReason.ENDED_BY_THERAPIST.value,
        )
        return effects


def room_window_close(*, room_id: uuid.UUID, now: datetime) -> list[Effect]:
    """The window closed (a socket's timer): the room ends for everyone, once. Nothing if it
    has ended already or the window has not closed yet (the booking moved)."""
    with transaction.atomic():
        room = locks.room_lock(room_id=room_id)
        if room is None:
            return []
        if room.ended_at is not None:
            return [
                Broadcast(
                    str(room.pk), server_message("ended", reason=room.end_reason), Close.ENDED
                )
            ]
        _, closes_at = room_window(booking=room.booking)
        if now < closes_at:
            return []
        people = locks.participants_lock(room_id=room.pk)
        effects = _end(room, people, EndReason.WINDOW_CLOSED, now)
        audit_record(
            action="video.room.ended",
            actor_label="system",
            resource_type=BOOKING,
            resource_id=str(room.booking_id),
            patient_id=room.booking.client_id,
            details={"room": str(room.pk), "reason": EndReason.WINDOW_CLOSED.value},
        )
        return effects
