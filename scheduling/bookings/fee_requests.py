"""The hand-off of a booking's money side to billing (docs/adr: the FeeRequest hand-off).

Scheduling decides what is owed when a booking is cancelled or missed (``policy.py``) and
records it as a ``FeeRequest`` in the same transaction as the change; billing claims each
pending request, charges or refunds through its gateway, and settles it. These are billing's
entry points: it never writes a ``FeeRequest`` itself.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.db.models import Q

from scheduling.bookings.policy import Settlement, Terms
from scheduling.models import Booking, FeeRequest, FeeRequestState


def terms_of(booking: Booking) -> Terms:
    """The cancellation terms ``booking`` copied when it was made."""
    return Terms(
        price_minor=booking.price_minor,
        free_until_hours=booking.cancel_free_hours,
        late_fee_kind=booking.late_fee_kind,
        late_fee_value=booking.late_fee_value,
    )


def fee_request_open(booking: Booking, money: Settlement | None, *, now: datetime) -> None:
    """Hand the money side of a change to billing (nothing when the session was free)."""
    if money is not None:
        booking.fee_request = FeeRequest.objects.create(
            booking=booking,
            kind=money.kind,
            reason=money.reason,
            fee_minor=money.fee_minor,
            refund_minor=money.refund_minor,
            currency=booking.currency,
            created_at=now,
        )


def fee_request_claim(
    *, fee_request_id: uuid.UUID, now: datetime, lease: timedelta = timedelta(minutes=5)
) -> bool:
    """Claim a pending fee request for processing (one claimant wins while the lease runs)."""
    free = Q(claimed_until__isnull=True) | Q(claimed_until__lte=now)
    return (
        FeeRequest.objects.filter(free, pk=fee_request_id, state=FeeRequestState.PENDING).update(
            claimed_until=now + lease
        )
        == 1
    )


def fee_request_defer(*, fee_request_id: uuid.UUID, until: datetime) -> None:
    """Billing will try a pending request again at ``until`` (a fee charge that failed)."""
    FeeRequest.objects.filter(pk=fee_request_id, state=FeeRequestState.PENDING).update(
        claimed_until=until
    )


def fee_request_settle(*, fee_request_id: uuid.UUID, now: datetime) -> None:
    """Billing has done what the request asked (idempotent)."""
    FeeRequest.objects.filter(pk=fee_request_id, state=FeeRequestState.PENDING).update(
        state=FeeRequestState.SETTLED, settled_at=now, claimed_until=None
    )
