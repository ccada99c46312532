"""What refuses a booking, and in what order: pure judgements of facts read by the caller.

A booking, each occurrence of a series and a reschedule are judged by the same ``refusal``, on
``Facts`` read under the parties' locks (``scheduling.bookings.selectors.booking_facts``). The
first rule that fails is the answer, in this order:

1. the therapist holds a verified licence for the client's jurisdiction, current on the
   licence day (``licence_day``: the session's UTC date, or today if that is later);
2. a therapist who takes no new clients is booked only by a client they know (someone with a
   session of theirs that was not cancelled; a hold that ran out counts as cancelled);
3. the slot engine offers the start right now (working hours, overrides, notice and horizon,
   buffers, bookings and unexpired holds, imported calendars, the daily maximum);
4. the client has no live session (confirmed, or a hold not yet run out) overlapping this one.

The licence comes first so that a client outside the therapist's jurisdictions learns that, and
nothing about the therapist's calendar. A status moves only along ``NEXT``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum

from scheduling.models import BookingStatus


class Refusal(StrEnum):
    """Why a booking is refused; each value is the problem's ``code`` (``errors.refused``)."""

    NO_THERAPIST = "not_found"
    NO_SESSION_TYPE = "session_type_not_found"
    NOT_LICENSED = "therapist_not_licensed"
    NOT_ACCEPTING_NEW_CLIENTS = "not_accepting_new_clients"
    SLOT_UNAVAILABLE = "slot_unavailable"
    CLIENT_OVERLAP = "client_overlap"


@dataclass(frozen=True, slots=True)
class Facts:
    """What the rules need to know about one session, read under the parties' locks.

    ``known`` is read only for a therapist who takes no new clients (None: not read)."""

    licensed: bool
    accepting_new_clients: bool
    known: bool | None
    slot_open: bool
    client_overlaps: bool


def refusal(facts: Facts) -> Refusal | None:
    """The first rule (module docstring) that refuses the session, or None when it may be
    booked."""
    if not facts.licensed:
        return Refusal.NOT_LICENSED
    if not facts.accepting_new_clients:
        if facts.known is None:
            raise ValueError("refusal: whether the client is known was not read")
        if not facts.known:
            return Refusal.NOT_ACCEPTING_NEW_CLIENTS
    if not facts.slot_open:
        return Refusal.SLOT_UNAVAILABLE
    if facts.client_overlaps:
        return Refusal.CLIENT_OVERLAP
    return None


def licence_day(*, start: datetime, now: datetime) -> date:
    """The day a licence must be current on to book (or join) ``start`` at ``now``: the
    session's UTC date, or today's when the session's has passed."""
    return max(start.astimezone(UTC).date(), now.date())


# Which status may follow which (a reschedule keeps the status).
NEXT: dict[str, frozenset[str]] = {
    BookingStatus.HELD: frozenset({BookingStatus.CONFIRMED, BookingStatus.CANCELLED}),
    BookingStatus.CONFIRMED: frozenset(
        {BookingStatus.CANCELLED, BookingStatus.COMPLETED, BookingStatus.NO_SHOW}
    ),
}


def may_move(*, from_status: str, to_status: str) -> bool:
    """Whether a booking may go from ``from_status`` to ``to_status``."""
    return to_status in NEXT.get(from_status, frozenset())
