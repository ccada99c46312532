"""A booking's life after it is made: the state machine, holds running out, cancellation and
rescheduling, how the session went, and the therapist's cancellation terms.

States: ``held`` (the client pays; the hold blocks the slot until ``hold_expires_at`` and then
stops blocking by itself) → ``confirmed`` → ``completed`` | ``cancelled`` | ``no_show``; a hold
may also end ``cancelled`` (released, cancelled or expired). Only these services change a
booking's status (``rules.NEXT``); each change writes a ``BookingTransition`` and an audit event
in the same transaction, and an illegal one raises ``IllegalTransition`` (409 with the current
status). Writes that can make time busy or free lock the client, the therapist and then the
booking (``locks.py``; docs/concurrency.md).

Auditing: with a ``request`` the caller is an ``AuditedMixin`` view and the event joins that
request's batch (its user is the actor); without one (billing, jobs, commands) the event is
written at once for ``actor``, or for ``actor_label`` (``"billing"``, ``"system"``).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import HttpRequest

from api.compiled import insert_rows
from api.errors import ConflictError, ForbiddenError, NotFoundError, UnprocessableError
from api.models import Role, User
from audit.services import audit_access
from scheduling.bookings import contributions, locks, notifications, rules, selectors
from scheduling.bookings.db import is_overlap_violation
from scheduling.bookings.errors import (
    HoldExpired,
    IllegalTransition,
    RescheduleTooLate,
    SlotUnavailable,
    refused,
)
from scheduling.bookings.fee_requests import fee_request_open, terms_of
from scheduling.bookings.policy import is_free_to_cancel, no_show_settlement, settlement
from scheduling.models import (
    Booking,
    BookingStatus,
    BookingTransition,
    CancellationPolicy,
    LateFeeKind,
    NotificationKind,
    SessionType,
    TherapistProfile,
)

SYSTEM = "system"
BILLING = "billing"
# Why a client or a therapist cancels (codes only: free text could carry health information).
CANCEL_REASONS = ("schedule_conflict", "personal", "emergency", "therapist_unavailable", "other")


# --- What every change writes -----------------------------------------------------------------


def audit(
    booking: Booking,
    action: str,
    *,
    request: HttpRequest | None,
    actor: User | None,
    actor_label: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    """The change's audit event (module docstring: who the actor is)."""
    if request is not None:
        audit_access(obj=booking, action=action, details=details)
    else:
        audit_access(
            obj=booking,
            action=action,
            actor=actor,
            actor_label="" if actor is not None else (actor_label or SYSTEM),
            details=details,
        )


def transition_of(
    booking: Booking,
    *,
    to_status: str,
    from_status: str,
    actor: User | None,
    actor_label: str = "",
    reason: str,
    now: datetime,
    previous_start: datetime | None = None,
) -> BookingTransition:
    """The row recording a change of ``booking``, unsaved: the caller inserts it
    (``insert_rows``; a new booking's first one goes in the booking's own INSERT)."""
    return BookingTransition(
        booking=booking,
        from_status=from_status,
        to_status=to_status,
        actor=actor,
        actor_label="" if actor is not None else (actor_label or SYSTEM),
        reason=reason,
        previous_start=previous_start,
        occurred_at=now,
    )


def _change(
    booking: Booking,
    *,
    to_status: str,
    action: str,
    actor: User | None,
    actor_label: str = "",
    reason: str,
    request: HttpRequest | None,
    now: datetime,
    fields: dict[str, Any] | None = None,
    evidence: dict[str, Any] | None = None,
) -> Booking:
    """Move a locked booking to ``to_status`` (``rules.may_move``), recorded and audited
    (with ``evidence``, e.g. the video room's attendance, in the audit details).

    Bumps the ICS sequence, since every change of status shows in a calendar."""
    from_status = booking.status
    if not rules.may_move(from_status=from_status, to_status=to_status):
        raise IllegalTransition(from_status)
    values = {"status": to_status, "updated_at": now, **(fields or {})}
    Booking.objects.filter(pk=booking.pk).update(sequence=F("sequence") + 1, **values)
    for name, value in values.items():
        setattr(booking, name, value)
    booking.sequence += 1
    insert_rows(
        [
            transition_of(
                booking,
                from_status=from_status,
                to_status=to_status,
                actor=actor,
                actor_label=actor_label,
                reason=reason,
                now=now,
            )
        ]
    )
    audit(
        booking,
        action,
        request=request,
        actor=actor,
        actor_label=actor_label,
        details={"from": from_status, "to": to_status, "reason": reason, **(evidence or {})},
    )
    return booking


def availability_changed(*, therapist: TherapistProfile) -> None:
    """Time became busy or free: mark the directory's precomputed summary stale.

    ``manage.py refresh_availability`` (run every minute) recomputes it at its next run. Doing
    it here would recompute 60 days of slots inside the booking's lock on every booking, which
    is most of a booking's cost; the summary only ranks the directory, while the slot list and
    the booking check are always exact. ``therapist`` was read under its lock, so a summary
    already marked stale needs no write."""
    if therapist.availability_computed_at is not None:
        TherapistProfile.objects.filter(pk=therapist.pk).update(availability_computed_at=None)
        therapist.availability_computed_at = None


def participant(booking: Booking | None, user: User) -> Booking:
    """The booking if ``user`` is its client or its therapist; anything else is a plain 404."""
    if booking is None or user.pk not in (booking.client_id, booking.therapist.user_id):
        raise NotFoundError("No such booking.")
    return booking


def _is_therapist(booking: Booking, user: User) -> bool:
    return user.pk == booking.therapist.user_id


# --- Holds that ran out -----------------------------------------------------------------------


def expire_holds(*, therapist: TherapistProfile, now: datetime) -> int:
    """Cancel the therapist's holds that ran out (under the therapist's lock).

    They already stopped blocking in the slot engine's eyes; cancelling them takes them out of
    the exclusion constraint's scope before this transaction inserts or moves a booking."""
    expired = list(
        Booking.objects.select_for_update(no_key=True, of=("self",))
        .select_related("therapist")
        .filter(therapist=therapist, status=BookingStatus.HELD, hold_expires_at__lte=now)
        .order_by("pk")
    )
    for booking in expired:
        _change(
            booking,
            to_status=BookingStatus.CANCELLED,
            action="expire",
            actor=None,
            actor_label=SYSTEM,
            reason="hold_expired",
            request=None,
            now=now,
        )
    notifications.notify(bookings=expired, kind=NotificationKind.CANCELLED, now=now)
    return len(expired)


def holds_expire(*, now: datetime) -> int:
    """Tidy-up (``manage.py expire_holds``): cancel every expired hold, one therapist per
    transaction. Not needed for correctness (an expired hold blocks nothing); idempotent."""
    therapist_ids = (
        Booking.objects.filter(status=BookingStatus.HELD, hold_expires_at__lte=now)
        .order_by("therapist_id")
        .values_list("therapist_id", flat=True)
        .distinct()
    )
    count = 0
    for therapist_id in list(therapist_ids):
        with transaction.atomic():
            therapist = locks.lock_therapist(therapist_id=therapist_id)
            if therapist is None:
                continue
            expired = expire_holds(therapist=therapist, now=now)
            if expired:
                availability_changed(therapist=therapist)
            count += expired
    return count


# --- Status changes ---------------------------------------------------------------------------


@transaction.atomic
def booking_confirm(
    *,
    booking_id: uuid.UUID,
    actor: User | None = None,
    reason: str = "payment_succeeded",
    request: HttpRequest | None = None,
    now: datetime,
) -> Booking:
    """held → confirmed (billing on payment, or the therapist for a session paid outside).

    ``IllegalTransition`` unless held; ``HoldExpired`` when the hold ran out. With a user as
    ``actor``, only the booking's therapist may confirm (others: 404)."""
    booking = locks.lock_booking(booking_id=booking_id)
    if booking is None:
        raise NotFoundError("No such booking.")
    if actor is not None and not _is_therapist(participant(booking, actor), actor):
        raise ForbiddenError("Only the therapist confirms a session paid outside.")
    if booking.status == BookingStatus.HELD and booking.hold_expires_at is not None:
        if booking.hold_expires_at <= now:
            raise HoldExpired()
    booking = _change(
        booking,
        to_status=BookingStatus.CONFIRMED,
        action="confirm",
        actor=actor,
        actor_label=BILLING,
        reason=reason,
        request=request,
        now=now,
        fields={"hold_expires_at": None},
    )
    notifications.notify(bookings=[booking], kind=NotificationKind.CONFIRMED, now=now)
    return booking


@transaction.atomic
def booking_release(
    *,
    booking_id: uuid.UUID,
    actor: User | None = None,
    reason: str = "payment_failed",
    request: HttpRequest | None = None,
    now: datetime,
) -> Booking:
    """held → cancelled for billing (the payment failed or was abandoned): the slot is free at
    once. Idempotent for a cancelled booking; no fee request (billing asked for it)."""
    booking = locks.lock_booking_and_parties(booking_id=booking_id)
    if booking is None:
        raise NotFoundError("No such booking.")
    if booking.status == BookingStatus.CANCELLED:
        return booking
    if booking.status != BookingStatus.HELD:
        raise IllegalTransition(booking.status)
    booking = _change(
        booking,
        to_status=BookingStatus.CANCELLED,
        action="release",
        actor=actor,
        actor_label=BILLING,
        reason=reason,
        request=request,
        now=now,
    )
    notifications.notify(bookings=[booking], kind=NotificationKind.CANCELLED, now=now)
    availability_changed(therapist=booking.therapist)
    return booking


@transaction.atomic
def booking_cancel(
    *,
    booking_id: uuid.UUID,
    by: User,
    reason: str,
    request: HttpRequest | None = None,
    now: datetime,
) -> Booking:
    """The client or the therapist cancels (held or confirmed). The money side is handed to
    billing as a ``FeeRequest`` by the booking's copied terms (``policy.settlement``): free
    until N hours before, then the late fee; a therapist cancelling refunds in full."""
    booking = participant(locks.lock_booking_and_parties(booking_id=booking_id), by)
    was_confirmed = booking.status == BookingStatus.CONFIRMED
    booking = _change(
        booking,
        to_status=BookingStatus.CANCELLED,
        action="cancel",
        actor=by,
        reason=reason,
        request=request,
        now=now,
    )
    money = settlement(
        terms=terms_of(booking),
        start=booking.start,
        by_therapist=_is_therapist(booking, by),
        was_confirmed=was_confirmed,
        now=now,
    )
    fee_request_open(booking, money, now=now)
    notifications.notify(bookings=[booking], kind=NotificationKind.CANCELLED, now=now)
    availability_changed(therapist=booking.therapist)
    return booking


@transaction.atomic
def booking_reschedule(
    *,
    booking_id: uuid.UUID,
    by: User,
    start: datetime,
    request: HttpRequest | None = None,
    now: datetime,
) -> Booking:
    """Move a held or confirmed booking to ``start`` atomically: the new time is judged by the
    same rules as a new booking (``rules.refusal``, ignoring the booking itself) and taken, and
    the old one freed, in one transaction, or nothing changes. A client may move a session only
    while it could still be cancelled for free; the therapist any time before it starts. Terms
    are kept."""
    booking = participant(locks.lock_booking_and_parties(booking_id=booking_id), by)
    status = booking.status
    if status not in (BookingStatus.HELD, BookingStatus.CONFIRMED) or booking.start <= now:
        raise IllegalTransition(status)
    if status == BookingStatus.HELD and booking.hold_expires_at and booking.hold_expires_at <= now:
        raise HoldExpired()
    therapist = booking.therapist
    if not _is_therapist(booking, by) and not is_free_to_cancel(
        start=booking.start, free_until_hours=booking.cancel_free_hours, now=now
    ):
        raise RescheduleTooLate()
    if start == booking.start:
        raise ConflictError("The session is already at that time.", code="same_time")
    expire_holds(therapist=therapist, now=now)
    # The booking's own length, even if the session type has changed since.
    length = SessionType(
        therapist=therapist, duration_minutes=(booking.end - booking.start) // timedelta(minutes=1)
    )
    refusal = rules.refusal(
        selectors.booking_facts(
            client=booking.client,
            therapist=therapist,
            session_type=length,
            start=start,
            jurisdiction=booking.client_jurisdiction,
            now=now,
            exclude=[booking.pk],
        )
    )
    if refusal is not None:
        raise refused(refusal)
    previous = booking.start
    end = start + (booking.end - booking.start)
    values = {
        "start": start,
        "end": end,
        "blocked_start": start - timedelta(minutes=therapist.buffer_before_minutes),
        "blocked_end": end + timedelta(minutes=therapist.buffer_after_minutes),
        "updated_at": now,
    }
    try:
        Booking.objects.filter(pk=booking.pk).update(sequence=F("sequence") + 1, **values)
    except IntegrityError as exc:
        if is_overlap_violation(exc):
            raise SlotUnavailable() from exc
        raise
    for name, value in values.items():
        setattr(booking, name, value)
    booking.sequence += 1
    insert_rows(
        [
            transition_of(
                booking,
                from_status=status,
                to_status=status,
                actor=by,
                reason="rescheduled",
                now=now,
                previous_start=previous,
            )
        ]
    )
    audit(booking, "reschedule", request=request, actor=by, details={"status": status})
    notifications.notify(bookings=[booking], kind=NotificationKind.RESCHEDULED, now=now)
    availability_changed(therapist=therapist)
    return booking


def _after_start(
    *,
    booking_id: uuid.UUID,
    by: User | None,
    to_status: str,
    action: str,
    request: HttpRequest | None,
    now: datetime,
    evidence: contributions.EvidenceCheck,
) -> Booking:
    """The therapist (or, with ``by`` None, the system) records how a started session went;
    ``evidence`` (video's ``contributions.SessionEvidence``: the room's attendance) may
    refuse, else its details are audited with the change."""
    booking = locks.lock_booking(booking_id=booking_id)
    if by is not None:
        booking = participant(booking, by)
        if not _is_therapist(booking, by):
            raise ForbiddenError("Only the therapist records how a session went.")
    if booking is None:
        raise NotFoundError("No such booking.")
    if booking.start > now:
        raise ConflictError("The session has not started yet.", code="not_started")
    found = evidence(booking=booking, now=now) if booking.status == BookingStatus.CONFIRMED else {}
    return _change(
        booking,
        to_status=to_status,
        action=action,
        actor=by,
        reason=action,
        request=request,
        now=now,
        evidence=found,
    )


@transaction.atomic
def booking_complete(
    *, booking_id: uuid.UUID, by: User | None, request: HttpRequest | None = None, now: datetime
) -> Booking:
    """confirmed → completed, by the therapist (or the system, from the video room's
    attendance), once the session has started; for a video or audio session, only if the room
    did not record it unattended (``video.evidence.completion_evidence``)."""
    return _after_start(
        booking_id=booking_id,
        by=by,
        to_status=BookingStatus.COMPLETED,
        action="complete",
        request=request,
        now=now,
        evidence=contributions.session_evidence().completion,
    )


@transaction.atomic
def booking_mark_no_show(
    *, booking_id: uuid.UUID, by: User, request: HttpRequest | None = None, now: datetime
) -> Booking:
    """confirmed → no_show (the client did not come), by the therapist, once it has started;
    for a video or audio session only from the no-show deadline and if the client was not in
    the room by then (``video.evidence.client_no_show_evidence``). Billing is asked for the
    no-show fee (the booking's late fee; the rest is refunded)."""
    booking = _after_start(
        booking_id=booking_id,
        by=by,
        to_status=BookingStatus.NO_SHOW,
        action="no_show",
        request=request,
        now=now,
        evidence=contributions.session_evidence().client_no_show,
    )
    fee_request_open(
        booking, no_show_settlement(terms=terms_of(booking), by_therapist=False), now=now
    )
    return booking


@transaction.atomic
def booking_therapist_no_show(
    *,
    booking_id: uuid.UUID,
    by: User | None,
    request: HttpRequest | None = None,
    now: datetime,
    evidence: dict[str, Any] | None = None,
) -> Booking:
    """The therapist did not come: confirmed → cancelled (reason ``therapist_no_show``), once
    the session has started, recorded by the therapist themselves, by an admin after the
    client complained, or (``by`` None, with the room's ``evidence``) by the system
    (``video.no_shows``). Billing refunds everything; no fee. Anyone else: 404."""
    booking = locks.lock_booking_and_parties(booking_id=booking_id)
    if by is not None and by.role != Role.ADMIN:
        booking = participant(booking, by)
        if not _is_therapist(booking, by):
            raise ForbiddenError("Only the therapist, or an admin, records this.")
    if booking is None:
        raise NotFoundError("No such booking.")
    if booking.status != BookingStatus.CONFIRMED:
        raise IllegalTransition(booking.status)
    if booking.start > now:
        raise ConflictError("The session has not started yet.", code="not_started")
    booking = _change(
        booking,
        to_status=BookingStatus.CANCELLED,
        action="therapist_no_show",
        actor=by,
        reason="therapist_no_show",
        request=request,
        now=now,
        evidence=evidence,
    )
    fee_request_open(
        booking, no_show_settlement(terms=terms_of(booking), by_therapist=True), now=now
    )
    notifications.notify(bookings=[booking], kind=NotificationKind.CANCELLED, now=now)
    return booking


# --- Cancellation terms -----------------------------------------------------------------------


def policy_of(*, therapist: TherapistProfile) -> CancellationPolicy:
    """The therapist's cancellation policy (the defaults when they never set one)."""
    try:
        return therapist.cancellation_policy
    except CancellationPolicy.DoesNotExist:
        return CancellationPolicy(therapist=therapist)


@transaction.atomic
def cancellation_policy_set(
    *,
    therapist: TherapistProfile,
    free_until_hours: int,
    late_fee_kind: str,
    late_fee_value: int,
    now: datetime,
) -> CancellationPolicy:
    """The therapist's terms for new bookings (existing bookings keep the terms they copied)."""
    if late_fee_kind == LateFeeKind.NONE:
        late_fee_value = 0
    elif late_fee_kind == LateFeeKind.PERCENT and late_fee_value > 100:
        raise UnprocessableError("A percentage is at most 100.", code="late_fee_invalid")
    policy, _ = CancellationPolicy.objects.update_or_create(
        therapist=therapist,
        defaults={
            "free_until_hours": free_until_hours,
            "late_fee_kind": late_fee_kind,
            "late_fee_value": late_fee_value,
            "updated_at": now,
        },
    )
    return policy
