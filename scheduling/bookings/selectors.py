"""Booking reads: a participant's booking, a client's list, a therapist's schedule, and the
fee requests billing processes. Anyone who is not a participant gets a plain 404 (no oracle)."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.db.models import Prefetch, Q, QuerySet

from api.errors import NotFoundError
from api.models import Role, User
from billing.selectors import booking_session_payments
from scheduling.models import (
    Booking,
    BookingStatus,
    BookingTransition,
    FeeRequest,
    FeeRequestState,
    TherapistProfile,
)


def _visible(*, now: datetime) -> Q:
    """Everything but holds that ran out (those never happened, as far as anyone can see)."""
    return ~Q(status=BookingStatus.HELD, hold_expires_at__lte=now)


def _base() -> QuerySet[Booking]:
    # With each booking's session payment (``BookingOut.payment``): one query for all of them.
    return Booking.objects.select_related(
        "therapist", "client", "session_type", "fee_request"
    ).prefetch_related(
        Prefetch("payments", queryset=booking_session_payments(), to_attr="session_payments")
    )


def bookings_of(*, user: User, now: datetime) -> QuerySet[Booking]:
    """The caller's bookings: a client's own sessions, or a therapist's (newest start first)."""
    mine = Q(therapist__user=user) if user.role == Role.THERAPIST else Q(client=user)
    return _base().filter(mine).filter(_visible(now=now)).order_by("-start", "-id")


def booking_for_participant(*, booking_id: uuid.UUID, user: User) -> Booking:
    """One booking with its history, for its client or its therapist only."""
    booking = (
        _base()
        .prefetch_related(
            Prefetch(
                "transitions",
                queryset=BookingTransition.objects.select_related("actor").order_by(
                    "occurred_at", "id"
                ),
            )
        )
        .filter(Q(client=user) | Q(therapist__user=user), pk=booking_id)
        .first()
    )
    if booking is None:
        raise NotFoundError("No such booking.")
    return booking


def day_range(*, day: date, zone: ZoneInfo, days: int = 1) -> tuple[datetime, datetime]:
    """The UTC instants of local dates ``day`` .. ``day + days - 1`` in ``zone`` (DST-exact:
    a local day may last 23 or 25 hours)."""
    start = datetime.combine(day, datetime.min.time(), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=days), datetime.min.time(), tzinfo=zone)
    return start, end


def therapist_schedule(
    *,
    therapist: TherapistProfile,
    start: datetime,
    end: datetime,
    now: datetime,
    include_cancelled: bool = False,
) -> list[Booking]:
    """The therapist's sessions starting in ``[start, end)``, in order, with client names."""
    rows = (
        _base()
        .filter(therapist=therapist, start__gte=start, start__lt=end)
        .filter(_visible(now=now))
        .order_by("start", "id")
    )
    if not include_cancelled:
        rows = rows.exclude(status=BookingStatus.CANCELLED)
    return list(rows)


def fee_requests_pending(*, limit: int = 100, now: datetime | None = None) -> QuerySet[FeeRequest]:
    """Fee requests billing has not settled yet, oldest first; with ``now``, only those no one
    holds or has put off past ``now`` (``fee_request_claim``, ``fee_request_defer``)."""
    free = Q(claimed_until__isnull=True) | Q(claimed_until__lte=now) if now is not None else Q()
    return (
        FeeRequest.objects.filter(free, state=FeeRequestState.PENDING)
        .select_related("booking")
        .order_by("created_at", "id")[:limit]
    )
