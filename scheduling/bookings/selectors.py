"""Booking reads: a participant's booking, a client's list, a therapist's schedule, and the
fee requests billing processes. Anyone who is not a participant gets a plain 404 (no oracle).

Billing reads bookings only through these and the statuses and fee kinds exported here
(docs/bookings.md, "Contract for other apps").
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import Exists, Prefetch, Q, QuerySet

from api.errors import NotFoundError
from api.models import Role, User
from scheduling.bookings import contributions, rules
from scheduling.models import (
    Booking,
    BookingStatus,
    BookingTransition,
    FeeRequest,
    FeeRequestKind,
    FeeRequestState,
    SessionType,
    TherapistProfile,
)
from scheduling.selectors import BLOCKING_STATUSES, licences_in, slot_is_open

__all__ = [
    "BookingStatus",
    "FeeRequestKind",
    "booking_facts",
    "booking_for_participant",
    "bookings_of",
    "day_range",
    "fee_request_to_process",
    "fee_requests_pending",
    "fee_requests_refund_owed",
    "party_facts",
    "therapist_schedule",
]


def _visible(*, now: datetime) -> Q:
    """Everything but holds that ran out (those never happened, as far as anyone can see)."""
    return ~Q(status=BookingStatus.HELD, hold_expires_at__lte=now)


def _base() -> QuerySet[Booking]:
    # With each booking's session payment (``BookingOut.payment``, billing's contribution): one
    # query for all of them.
    return Booking.objects.select_related(
        "therapist", "client", "session_type", "fee_request"
    ).prefetch_related(contributions.booking_payment().prefetch())


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


def fee_request_to_process(*, fee_request_id: uuid.UUID) -> FeeRequest:
    """One fee request with its booking and the booking's therapist (what billing charges and
    refunds by); ``FeeRequest.DoesNotExist`` for an unknown id."""
    return FeeRequest.objects.select_related("booking__therapist").get(pk=fee_request_id)


def fee_requests_refund_owed() -> QuerySet[FeeRequest]:
    """Fee requests not settled yet that give money back (``refund_minor`` above zero): billing
    narrows them to a payment's booking to say a refund is pending."""
    return FeeRequest.objects.filter(state=FeeRequestState.PENDING, refund_minor__gt=0)


# --- What the booking rules judge (rules.Facts) ----------------------------------------------


def _live_or_held(*, now: datetime) -> Q:
    """A session that blocks time: live, or a hold that has not run out at ``now``."""
    return Q(status__in=BLOCKING_STATUSES) | Q(status=BookingStatus.HELD, hold_expires_at__gt=now)


def party_facts(
    *,
    client: User | uuid.UUID,
    therapist_id: Any,
    start: datetime,
    end: datetime,
    jurisdiction: str,
    now: datetime,
    licence_day: date,
    exclude: Collection[uuid.UUID] = (),
    known: bool = True,
) -> dict[str, Exists]:
    """The parties' facts as EXISTS expressions, to be read in one statement: ``licensed`` (in
    ``jurisdiction`` on ``licence_day``: ``rules.licence_day``, a parameter of its own for
    ``CompiledRead``), ``overlapping`` (the client has
    a live session overlapping ``[start, end)``, bookings in ``exclude`` aside) and, unless
    ``known`` is False, ``known`` (the client has a session of the therapist's that was not
    cancelled). ``therapist_id`` is a value or an ``OuterRef``."""
    licensed = licences_in(therapist=therapist_id, jurisdiction=jurisdiction, today=licence_day)
    overlapping = Booking.objects.filter(
        _live_or_held(now=now), client=client, start__lt=end, end__gt=start
    )
    if exclude:
        overlapping = overlapping.exclude(pk__in=list(exclude))
    facts = {"licensed": Exists(licensed), "overlapping": Exists(overlapping)}
    if known:  # a hold that has run out is as good as cancelled
        theirs = (
            Booking.objects.filter(therapist=therapist_id, client=client)
            .exclude(status=BookingStatus.CANCELLED)
            .exclude(status=BookingStatus.HELD, hold_expires_at__lte=now)
        )
        facts["known"] = Exists(theirs.exclude(pk__in=list(exclude)) if exclude else theirs)
    return facts


def booking_facts(
    *,
    client: User,
    therapist: TherapistProfile,
    session_type: SessionType,
    start: datetime,
    jurisdiction: str,
    now: datetime,
    exclude: Collection[uuid.UUID] = (),
    parties: Mapping[str, bool] | None = None,
) -> rules.Facts:
    """What ``rules.refusal`` judges for ``client`` booking ``session_type`` at ``start``, read
    under the parties' locks: ``parties`` when the caller already read ``party_facts`` (a
    booking reads them in its locking statement), else read here in one query; then the slot
    engine's answer."""
    read: Mapping[str, object] = (
        parties
        if parties is not None
        else TherapistProfile.objects.filter(pk=therapist.pk)
        .values(
            **party_facts(
                client=client,
                therapist_id=therapist.pk,
                start=start,
                end=start + timedelta(minutes=session_type.duration_minutes),
                jurisdiction=jurisdiction,
                now=now,
                licence_day=rules.licence_day(start=start, now=now),
                exclude=exclude,
            )
        )
        .get()
    )
    return rules.Facts(
        licensed=bool(read["licensed"]),
        accepting_new_clients=therapist.accepting_new_clients,
        known=bool(read["known"]) if "known" in read else None,
        slot_open=slot_is_open(
            therapist=therapist,
            session_type=session_type,
            start=start,
            now=now,
            exclude_booking_ids=exclude,
        ),
        client_overlaps=bool(read["overlapping"]),
    )
