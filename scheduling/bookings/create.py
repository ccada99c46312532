"""Making one booking: a hold while the client pays, or confirmed at once when free.

Refused, having written nothing, by the rules in ``rules.py`` (licence, new clients, the slot
engine, the client's own sessions), judged on facts read under the parties' locks. The price,
currency and cancellation terms are copied onto the booking. How the locks and this one
transaction keep two bookings from overlapping: docs/concurrency.md.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest

from api.compiled import CompiledRead, Rows, insert_together
from api.errors import ForbiddenError
from api.models import Role, User
from scheduling.bookings import contributions, locks, notifications, rules, selectors
from scheduling.bookings.db import is_overlap_violation
from scheduling.bookings.errors import SlotUnavailable, refused
from scheduling.bookings.lifecycle import (
    audit,
    availability_changed,
    expire_holds,
    policy_of,
    transition_of,
)
from scheduling.models import (
    SESSION_MAX_MINUTES,
    Booking,
    BookingSeries,
    BookingStatus,
    CancellationPolicy,
    NotificationKind,
    SessionType,
    TherapistProfile,
)


def client_only(client: User) -> None:
    if client.role != Role.CLIENT:
        raise ForbiddenError("Only clients book sessions.", code="clients_only")


def booking_insert(
    *,
    client: User,
    therapist: TherapistProfile,
    session_type: SessionType,
    policy: CancellationPolicy,
    start: datetime,
    jurisdiction: str,
    series: BookingSeries | None,
    request: HttpRequest | None,
    now: datetime,
    emails: bool = True,
) -> Booking:
    """The booking, inserted with the terms in force, its first transition, its "booked"
    emails to both parties (unless ``emails`` is False: a series announces itself once, on its
    first booking) and its audit event. The booking, transition and email rows are one
    statement on PostgreSQL (``insert_together``: ADR 0004). An overlap the exclusion
    constraint refuses is ``SlotUnavailable``, having written nothing."""
    end = start + timedelta(minutes=session_type.duration_minutes)
    paid = session_type.price_minor > 0
    booking = Booking(
        therapist=therapist,
        client=client,
        session_type=session_type,
        start=start,
        end=end,
        blocked_start=start - timedelta(minutes=therapist.buffer_before_minutes),
        blocked_end=end + timedelta(minutes=therapist.buffer_after_minutes),
        status=BookingStatus.HELD if paid else BookingStatus.CONFIRMED,
        hold_expires_at=now + timedelta(minutes=settings.BOOKING_HOLD_MINUTES) if paid else None,
        created_at=now,
        updated_at=now,
        client_jurisdiction=jurisdiction,
        price_minor=session_type.price_minor,
        currency=session_type.currency,
        cancel_free_hours=policy.free_until_hours,
        late_fee_kind=policy.late_fee_kind,
        late_fee_value=policy.late_fee_value,
        series=series,
    )
    first = transition_of(
        booking,
        from_status="",
        to_status=booking.status,
        actor=client,
        reason="booked" if booking.status == BookingStatus.HELD else "booked_free",
        now=now,
    )
    rows = [Rows([booking]), Rows([first])]
    if emails:
        booked = notifications.notification_rows([booking], kind=NotificationKind.BOOKED, now=now)
        rows.append(Rows(booked, ignore_conflicts=True))
    try:
        insert_together(*rows)
    except IntegrityError as exc:
        if is_overlap_violation(exc):
            raise SlotUnavailable() from exc
        raise
    if emails:
        notifications.deliver_after_commit([booking], now=now)
    contributions.booking_payment().none_yet(booking)
    details: dict[str, Any] = {"to": booking.status}
    if series is not None:
        details["series"] = str(series.pk)
    audit(booking, "create", request=request, actor=client, details=details)
    return booking


def _locking_read(
    *,
    therapist_id: uuid.UUID,
    session_type_id: uuid.UUID,
    client_id: uuid.UUID,
    start: datetime,
    end: datetime,
    jurisdiction: str,
    now: datetime,
    licence_day: date,
) -> QuerySet[SessionType]:
    """``booking_create``'s locking statement: the therapist locked through the session type,
    with the parties' facts within ``[start, end)`` and whether any hold has run out."""
    facts = selectors.party_facts(
        client=client_id,
        therapist_id=OuterRef("therapist_id"),
        start=start,
        end=end,
        jurisdiction=jurisdiction,
        now=now,
        licence_day=licence_day,
        known=False,
    )
    expired_holds = Booking.objects.filter(
        therapist=OuterRef("therapist_id"), status=BookingStatus.HELD, hold_expires_at__lte=now
    )
    return locks.therapist_through_session_type_locked(
        therapist_id=therapist_id,
        session_type_id=session_type_id,
        holds_expired=Exists(expired_holds),
        **facts,
    )


# Built and compiled once per database (docs/adr/0004-compiled-statements.md).
_LOCKING_READ = CompiledRead(_locking_read)
_LOCKING_READ_FACTS = ("licensed", "overlapping", "holds_expired")


def booking_create(
    *,
    client: User,
    therapist_id: uuid.UUID,
    session_type_id: uuid.UUID,
    start: datetime,
    jurisdiction: str,
    request: HttpRequest | None = None,
    now: datetime,
) -> Booking:
    """Book ``start`` for ``client``: a hold while they pay (confirmed at once when free);
    refused by the first of ``rules.refusal``'s rules that fails.

    Atomic, in the caller's transaction when there is one and without a savepoint of its own:
    every refusal is found before the first write and raised after the block, so the caller's
    transaction goes on (docs/adr/0006-savepoint-free-booking.md). A database error (the
    exclusion constraint's, answered as ``SlotUnavailable``) leaves it to be rolled back."""
    client_only(client)
    with transaction.atomic(savepoint=False):
        outcome = _book(
            client=client,
            therapist_id=therapist_id,
            session_type_id=session_type_id,
            start=start,
            jurisdiction=jurisdiction,
            request=request,
            now=now,
        )
    if isinstance(outcome, rules.Refusal):
        raise refused(outcome)
    return outcome


def _book(
    *,
    client: User,
    therapist_id: uuid.UUID,
    session_type_id: uuid.UUID,
    start: datetime,
    jurisdiction: str,
    request: HttpRequest | None,
    now: datetime,
) -> Booking | rules.Refusal:
    """``booking_create`` under its locks: the booking, or why not (having written nothing).

    After the client's lock, one statement locks the therapist and reads the session type, the
    profile and policy, the licence and overlap facts and whether any hold has run out (why
    that snapshot is safe: docs/concurrency.md). The overlap is looked for within the longest
    session any session type may have; only when that finds one, or the therapist takes no new
    clients, are the facts read again, exactly and in full."""
    locks.lock_client(client_id=client.pk)
    session_type = _LOCKING_READ.first(
        therapist_id=therapist_id,
        session_type_id=session_type_id,
        client_id=client.pk,
        start=start,
        end=start + timedelta(minutes=SESSION_MAX_MINUTES),
        jurisdiction=jurisdiction,
        now=now,
        licence_day=rules.licence_day(start=start, now=now),
    )
    if session_type is None:  # no such therapist, or no such active session type of theirs
        if locks.lock_therapist(therapist_id=therapist_id) is None:
            return rules.Refusal.NO_THERAPIST
        return rules.Refusal.NO_SESSION_TYPE
    therapist = session_type.therapist
    read = {name: bool(getattr(session_type, name)) for name in _LOCKING_READ_FACTS}
    exact = read["overlapping"] or not therapist.accepting_new_clients
    refusal = rules.refusal(
        selectors.booking_facts(
            client=client,
            therapist=therapist,
            session_type=session_type,
            start=start,
            jurisdiction=jurisdiction,
            now=now,
            parties=None if exact else {"licensed": read["licensed"], "overlapping": False},
        )
    )
    if refusal is not None:
        return refusal
    if read["holds_expired"]:  # out of the exclusion constraint's way before the insert
        expire_holds(therapist=therapist, now=now)
    booking = booking_insert(
        client=client,
        therapist=therapist,
        session_type=session_type,
        policy=policy_of(therapist=therapist),
        start=start,
        jurisdiction=jurisdiction,
        series=None,
        request=request,
        now=now,
    )
    availability_changed(therapist=therapist)
    return booking
