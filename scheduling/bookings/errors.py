"""The booking's refusals as problem types (409 or 422; a missing party is a plain 404)."""

from __future__ import annotations

from api.errors import ConflictError, DomainError, NotFoundError, UnprocessableError
from scheduling.bookings.rules import Refusal
from scheduling.models import BookingStatus
from scheduling.selectors import SessionTypeNotFound


class IllegalTransition(ConflictError):
    """The booking's status does not allow this change; ``current_status`` (also in the problem
    body) says what it is."""

    code = "illegal_transition"

    def __init__(self, current_status: str, detail: str | None = None):
        super().__init__(
            detail or f"Not possible while the booking is {current_status}.",
            extra={"current_status": current_status},
        )
        self.current_status = current_status


class HoldExpired(IllegalTransition):
    code = "hold_expired"

    def __init__(self) -> None:
        super().__init__(BookingStatus.HELD, "The hold on this slot has expired.")


class SlotUnavailable(ConflictError):
    code = "slot_unavailable"
    title = "Conflict"

    def __init__(self, detail: str | None = None):
        super().__init__(detail or "This time is not open for booking.")


class ClientOverlap(ConflictError):
    code = "client_overlap"
    default_detail = "You already have a session at an overlapping time."


class NotAcceptingNewClients(ConflictError):
    code = "not_accepting_new_clients"
    default_detail = "This therapist is not taking new clients."


class NotLicensed(UnprocessableError):
    code = "therapist_not_licensed"
    default_detail = "This therapist is not licensed where you are for that date."


class RescheduleTooLate(ConflictError):
    code = "reschedule_too_late"
    default_detail = "Sessions can be moved only before the free cancellation period ends."


class SeriesConflicts(ConflictError):
    code = "series_conflicts"


def refused(refusal: Refusal) -> DomainError:
    """The problem that answers ``refusal``."""
    if refusal is Refusal.NO_THERAPIST:
        return NotFoundError("No such therapist.")
    if refusal is Refusal.NO_SESSION_TYPE:
        return SessionTypeNotFound()
    return _REFUSED[refusal]()


_REFUSED: dict[Refusal, type[DomainError]] = {
    Refusal.NOT_LICENSED: NotLicensed,
    Refusal.NOT_ACCEPTING_NEW_CLIENTS: NotAcceptingNewClients,
    Refusal.SLOT_UNAVAILABLE: SlotUnavailable,
    Refusal.CLIENT_OVERLAP: ClientOverlap,
}
