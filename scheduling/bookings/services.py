"""Booking writes: the entry points other modules and apps call, each defined in its module.

``create`` (one booking), ``series`` (a weekly or fortnightly series), ``lifecycle`` (the state
machine after that, and the therapist's cancellation terms), ``fee_requests`` (billing's side of
the money hand-off). What refuses a booking, and in what order, is ``rules.py``; the problems
answered are ``errors.py``.
"""

from scheduling.bookings.create import booking_create
from scheduling.bookings.errors import HoldExpired, IllegalTransition
from scheduling.bookings.fee_requests import (
    fee_request_claim,
    fee_request_defer,
    fee_request_settle,
)
from scheduling.bookings.lifecycle import (
    CANCEL_REASONS,
    booking_cancel,
    booking_complete,
    booking_confirm,
    booking_mark_no_show,
    booking_release,
    booking_reschedule,
    booking_therapist_no_show,
    cancellation_policy_set,
    holds_expire,
    policy_of,
)
from scheduling.bookings.series import (
    ON_CONFLICT_ABORT,
    ON_CONFLICT_SKIP,
    SeriesOutcome,
    booking_series_create,
)

__all__ = [
    "CANCEL_REASONS",
    "HoldExpired",
    "IllegalTransition",
    "ON_CONFLICT_ABORT",
    "ON_CONFLICT_SKIP",
    "SeriesOutcome",
    "booking_cancel",
    "booking_complete",
    "booking_confirm",
    "booking_create",
    "booking_mark_no_show",
    "booking_release",
    "booking_reschedule",
    "booking_series_create",
    "booking_therapist_no_show",
    "cancellation_policy_set",
    "fee_request_claim",
    "fee_request_defer",
    "fee_request_settle",
    "holds_expire",
    "policy_of",
]
