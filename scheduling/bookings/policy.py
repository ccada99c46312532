"""Cancellation terms as pure functions of the booking's copied terms and the clock.

"Free until N hours before" counts elapsed time (UTC instants), never wall-clock hours: across a
DST change 24 hours before a 09:00 session is 08:00 or 10:00 local the day before, and the
time zones of the client and the therapist play no part. Cancelling exactly N hours before is
still free. A late fee is a percentage of the price (rounded half up to a minor unit) or a fixed
amount in the booking's currency, never more than the price. A client who does not come at all
owes what cancelling at the last moment would have cost: the same fee (``no_show_settlement``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from scheduling.models import FeeRequestKind, LateFeeKind


@dataclass(frozen=True, slots=True)
class Terms:
    price_minor: int
    free_until_hours: int
    late_fee_kind: str
    late_fee_value: int


@dataclass(frozen=True, slots=True)
class Settlement:
    """What billing is asked to do: keep ``fee_minor``, refund ``refund_minor``."""

    kind: str
    reason: str
    fee_minor: int
    refund_minor: int


def is_free_to_cancel(*, start: datetime, free_until_hours: int, now: datetime) -> bool:
    # In UTC: Python subtracts two datetimes of one zone by wall clock (23 h would read 24 h).
    return start.astimezone(UTC) - now.astimezone(UTC) >= timedelta(hours=free_until_hours)


def late_fee(terms: Terms) -> int:
    if terms.late_fee_kind == LateFeeKind.PERCENT:
        return (terms.price_minor * terms.late_fee_value + 50) // 100
    if terms.late_fee_kind == LateFeeKind.FIXED:
        return min(terms.late_fee_value, terms.price_minor)
    return 0


def settlement(
    *, terms: Terms, start: datetime, by_therapist: bool, was_confirmed: bool, now: datetime
) -> Settlement | None:
    """The money side of a cancellation, or None when there is nothing to settle (free)."""
    if terms.price_minor == 0:
        return None
    if by_therapist:
        reason = "therapist_cancelled"
    elif not was_confirmed:
        reason = "hold_released"
    elif is_free_to_cancel(start=start, free_until_hours=terms.free_until_hours, now=now):
        reason = "client_cancelled_in_time"
    else:
        fee = late_fee(terms)
        kind = FeeRequestKind.LATE_CANCELLATION_FEE if fee else FeeRequestKind.FULL_REFUND
        return Settlement(kind, "client_cancelled_late", fee, terms.price_minor - fee)
    return Settlement(FeeRequestKind.FULL_REFUND, reason, 0, terms.price_minor)


def no_show_settlement(*, terms: Terms, by_therapist: bool) -> Settlement | None:
    """The money side of a session one party did not come to, or None when it was free. The
    client not coming costs the late fee (the rest is refunded); the therapist not coming
    refunds everything."""
    if terms.price_minor == 0:
        return None
    if by_therapist:
        return Settlement(FeeRequestKind.FULL_REFUND, "therapist_no_show", 0, terms.price_minor)
    fee = late_fee(terms)
    kind = FeeRequestKind.NO_SHOW_FEE if fee else FeeRequestKind.FULL_REFUND
    return Settlement(kind, "client_no_show", fee, terms.price_minor - fee)
