"""Booking writes: the state machine, holds, cancellation and rescheduling, series, policies.

States: ``held`` (the client pays; the hold blocks the slot until ``hold_expires_at`` and then
stops blocking by itself) → ``confirmed`` → ``completed`` | ``cancelled`` | ``no_show``; a hold
may also end ``cancelled`` (released, cancelled or expired). Only these services change a
booking's status; each change writes a ``BookingTransition`` and an audit event in the same
transaction, and an illegal one raises ``IllegalTransition`` (409 with the current status).

Every write that can make time busy or free locks the client, then the therapist
(``locks.py``), re-runs the slot engine through ``scheduling.selectors.slot_is_open`` (the
function that lists slots) on the locked state, and cancels that therapist's expired holds
before it inserts or moves a booking (an expired hold blocks nothing, so the order does not
change what is open); on
PostgreSQL the ``booking_no_overlap`` exclusion constraint has the last word
(``scheduling/bookings/db.py``, ``docs/concurrency.md``).

Auditing: with a ``request`` the caller is an ``AuditedMixin`` view and the event joins that
request's batch (its user is the actor); without one (billing, jobs, commands) the event is
written at once for ``actor``, or for ``actor_label`` (``"billing"``, ``"system"``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.http import HttpRequest

from api.compiled import CompiledRead, insert_rows
from api.errors import ConflictError, ForbiddenError, NotFoundError, UnprocessableError
from api.models import Role, User
from audit.services import audit_access
from scheduling import selectors
from scheduling.bookings import locks, notifications
from scheduling.bookings.db import is_overlap_violation
from scheduling.bookings.policy import (
    Settlement,
    Terms,
    is_free_to_cancel,
    no_show_settlement,
    settlement,
)
from scheduling.models import (
    SESSION_MAX_MINUTES,
    Booking,
    BookingSeries,
    BookingStatus,
    BookingTransition,
    CancellationPolicy,
    FeeRequest,
    FeeRequestState,
    LateFeeKind,
    NotificationKind,
    SeriesFrequency,
    SessionType,
    TherapistProfile,
)
from video import evidence as video_evidence

SYSTEM = "system"
BILLING = "billing"

# Who may move a booking from one status to another (reschedule keeps the status).
_NEXT = {
    BookingStatus.HELD: {BookingStatus.CONFIRMED, BookingStatus.CANCELLED},
    BookingStatus.CONFIRMED: {
        BookingStatus.CANCELLED,
        BookingStatus.COMPLETED,
        BookingStatus.NO_SHOW,
    },
}
# Why a client or a therapist cancels (codes only: free text could carry health information).
CANCEL_REASONS = ("schedule_conflict", "personal", "emergency", "therapist_unavailable", "other")


# --- Refusals ---------------------------------------------------------------------------------


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


# --- Helpers ----------------------------------------------------------------------------------


def _audit(
    booking: Booking,
    action: str,
    *,
    request: HttpRequest | None,
    actor: User | None,
    actor_label: str = "",
    details: dict[str, Any] | None = None,
) -> None:
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


def _transition(
    booking: Booking,
    *,
    to_status: str,
    from_status: str,
    actor: User | None,
    actor_label: str = "",
    reason: str,
    now: datetime,
    previous_start: datetime | None = None,
) -> None:
    """Record a change of ``booking`` (one INSERT)."""
    transition = BookingTransition(
        booking=booking,
        from_status=from_status,
        to_status=to_status,
        actor=actor,
        actor_label="" if actor is not None else (actor_label or SYSTEM),
        reason=reason,
        previous_start=previous_start,
        occurred_at=now,
    )
    insert_rows([transition])


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
    """Move a locked booking to ``to_status`` (checked against ``_NEXT``), recorded and audited
    (with ``evidence``, e.g. the video room's attendance, in the audit details).

    Bumps the ICS sequence, since every change of status shows in a calendar."""
    from_status = booking.status
    if to_status not in _NEXT.get(BookingStatus(from_status), set()):
        raise IllegalTransition(from_status)
    values = {"status": to_status, "updated_at": now, **(fields or {})}
    Booking.objects.filter(pk=booking.pk).update(sequence=F("sequence") + 1, **values)
    for name, value in values.items():
        setattr(booking, name, value)
    booking.sequence += 1
    _transition(
        booking,
        from_status=from_status,
        to_status=to_status,
        actor=actor,
        actor_label=actor_label,
        reason=reason,
        now=now,
    )
    _audit(
        booking,
        action,
        request=request,
        actor=actor,
        actor_label=actor_label,
        details={"from": from_status, "to": to_status, "reason": reason, **(evidence or {})},
    )
    return booking


def _availability_changed(*, therapist: TherapistProfile) -> None:
    """Time became busy or free: mark the directory's precomputed summary stale.

    ``manage.py refresh_availability`` (run every minute) recomputes it at its next run. Doing
    it here would recompute 60 days of slots inside the booking's lock on every booking, which
    is most of a booking's cost; the summary only ranks the directory, while the slot list and
    the booking check are always exact. ``therapist`` was read under its lock, so a summary
    already marked stale needs no write."""
    if therapist.availability_computed_at is not None:
        TherapistProfile.objects.filter(pk=therapist.pk).update(availability_computed_at=None)
        therapist.availability_computed_at = None


def _live() -> Q:
    return Q(status__in=selectors.BLOCKING_STATUSES)


def _expire_holds(*, therapist: TherapistProfile, now: datetime) -> int:
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
            expired = _expire_holds(therapist=therapist, now=now)
            if expired:
                _availability_changed(therapist=therapist)
            count += expired
    return count


def policy_of(*, therapist: TherapistProfile) -> CancellationPolicy:
    """The therapist's cancellation policy (the defaults when they never set one)."""
    try:
        return therapist.cancellation_policy
    except CancellationPolicy.DoesNotExist:
        return CancellationPolicy(therapist=therapist)


def _licence_day(*, start: datetime, now: datetime) -> date:
    """The day a licence must be current on to book ``start`` at ``now`` (UTC)."""
    return max(start.astimezone(UTC).date(), now.date())


def _party_facts(
    *,
    client: User | uuid.UUID,
    therapist_id: Any,
    start: datetime,
    end: datetime,
    jurisdiction: str,
    now: datetime,
    licence_day: date,
    exclude: list[uuid.UUID],
    known: bool = True,
) -> dict[str, Exists]:
    """What ``_refusal`` needs to know about the parties, as EXISTS expressions read in one
    statement: whether the therapist is licensed in ``jurisdiction`` on ``licence_day``
    (``_licence_day``), whether the client has a live session overlapping ``[start, end)`` and
    (unless ``known`` is False: it matters only for a therapist not taking new clients) whether
    the client is known to them. ``therapist_id`` is a value or an ``OuterRef``."""
    licensed = selectors.licences_in(
        therapist=therapist_id, jurisdiction=jurisdiction, today=licence_day
    )
    overlapping = Booking.objects.filter(
        _live() | Q(status=BookingStatus.HELD, hold_expires_at__gt=now),
        client=client,
        start__lt=end,
        end__gt=start,
    )
    if exclude:
        overlapping = overlapping.exclude(pk__in=exclude)
    facts = {"licensed": Exists(licensed), "overlapping": Exists(overlapping)}
    if known:  # a hold that has run out is as good as cancelled
        theirs = (
            Booking.objects.filter(therapist=therapist_id, client=client)
            .exclude(status=BookingStatus.CANCELLED)
            .exclude(status=BookingStatus.HELD, hold_expires_at__lte=now)
        )
        facts["known"] = Exists(theirs.exclude(pk__in=exclude) if exclude else theirs)
    return facts


def _refusal(
    *,
    client: User,
    therapist: TherapistProfile,
    session_type: SessionType,
    start: datetime,
    jurisdiction: str,
    now: datetime,
    exclude: Iterable[uuid.UUID] = (),
    facts: Mapping[str, object] | None = None,
) -> ConflictError | UnprocessableError | None:
    """Why ``client`` may not have this session now, or None. The same rules for a single
    booking, each occurrence of a series, and a reschedule (which excludes itself).

    ``facts`` are ``_party_facts`` when the caller already read them under the parties' locks
    (a booking reads them in its locking statement); else they are read here, in one query."""
    exclude = list(exclude)
    read: Mapping[str, object] = (
        facts
        if facts is not None
        else (
            TherapistProfile.objects.filter(pk=therapist.pk)
            .values(
                **_party_facts(
                    client=client,
                    therapist_id=therapist.pk,
                    start=start,
                    end=start + timedelta(minutes=session_type.duration_minutes),
                    jurisdiction=jurisdiction,
                    now=now,
                    licence_day=_licence_day(start=start, now=now),
                    exclude=exclude,
                )
            )
            .get()
        )
    )
    # Judged in this order (all read under the parties' locks).
    if not read["licensed"]:
        return NotLicensed()
    if not therapist.accepting_new_clients and not read["known"]:
        return NotAcceptingNewClients()
    if not selectors.slot_is_open(
        therapist=therapist,
        session_type=session_type,
        start=start,
        now=now,
        exclude_booking_ids=exclude,
    ):
        return SlotUnavailable()
    if read["overlapping"]:
        return ClientOverlap()
    return None


def _insert(
    *,
    client: User,
    therapist: TherapistProfile,
    session_type: SessionType,
    policy: CancellationPolicy,
    start: datetime,
    jurisdiction: str,
    series: BookingSeries | None,
    now: datetime,
) -> Booking:
    """The booking, inserted with the terms in force. An overlap the exclusion constraint
    refuses is ``SlotUnavailable``."""
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
    try:
        insert_rows([booking])
    except IntegrityError as exc:
        if is_overlap_violation(exc):
            raise SlotUnavailable() from exc
        raise
    return booking


def _created(
    booking: Booking,
    *,
    client: User,
    request: HttpRequest | None,
    now: datetime,
) -> None:
    reason = "booked" if booking.status == BookingStatus.HELD else "booked_free"
    _transition(
        booking,
        from_status="",
        to_status=booking.status,
        actor=client,
        reason=reason,
        now=now,
    )
    details: dict[str, Any] = {"to": booking.status}
    if booking.series_id is not None:
        details["series"] = str(booking.series_id)
    _audit(booking, "create", request=request, actor=client, details=details)


def _session_type(*, therapist: TherapistProfile, session_type_id: uuid.UUID) -> SessionType:
    return selectors.session_type_public_get(therapist=therapist, session_type_id=session_type_id)


def _client_only(client: User) -> None:
    if client.role != Role.CLIENT:
        raise ForbiddenError("Only clients book sessions.", code="clients_only")


# --- Create -----------------------------------------------------------------------------------


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
    facts = _party_facts(
        client=client_id,
        therapist_id=OuterRef("therapist_id"),
        start=start,
        end=end,
        jurisdiction=jurisdiction,
        now=now,
        licence_day=licence_day,
        exclude=[],
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
    """Book ``start`` for ``client``: a hold while they pay (confirmed at once when free).

    Refused (nothing written) when the slot is not offered right now, the therapist is not
    licensed in ``jurisdiction`` on that date, is not taking new clients, or the client already
    has an overlapping session. The price, currency and cancellation policy are copied on.

    Atomic, in the caller's transaction when there is one and without a savepoint of its own
    (two round trips on every booking): every refusal is found before the first write and
    raised after the block, so the caller's transaction goes on. A database error (the
    exclusion constraint's, answered as ``SlotUnavailable``) leaves it to be rolled back.

    The reads are folded into the locking statements: after the client's lock, one statement
    locks the therapist and reads the session type, the therapist's profile and policy, the
    licence and overlap ``_party_facts`` and whether any hold of theirs has run out. Those
    facts are safe to read in that statement's snapshot, which on PostgreSQL may predate the
    therapist's lock: the client's sessions change only under the client's lock, already held;
    a licence is not guarded by either lock; a hold that has run out at ``now`` was committed
    at least ``BOOKING_HOLD_MINUTES`` ago and only ever stops being held, so an older snapshot
    can only show more of them (each is re-checked under its row lock by ``_expire_holds``).
    The overlap is first looked for within the longest session any session type may have; only
    when that finds a session, or the therapist takes no new clients (is this client known to
    them?), are the facts read again, exactly and in full. What the therapist's lock
    guards (their bookings and rules) is read after it, by the slot engine. A hold that has run
    out counts for none of these, so the holds are cancelled only once the booking is sure."""
    _client_only(client)
    with transaction.atomic(savepoint=False):
        outcome = _booking_create(
            client=client,
            therapist_id=therapist_id,
            session_type_id=session_type_id,
            start=start,
            jurisdiction=jurisdiction,
            request=request,
            now=now,
        )
    if isinstance(outcome, Booking):
        return outcome
    raise outcome


def _booking_create(
    *,
    client: User,
    therapist_id: uuid.UUID,
    session_type_id: uuid.UUID,
    start: datetime,
    jurisdiction: str,
    request: HttpRequest | None,
    now: datetime,
) -> Booking | NotFoundError | ConflictError | UnprocessableError:
    """``booking_create`` under its locks: the booking, or why not (having written nothing)."""
    locks.lock_client(client_id=client.pk)
    session_type = _LOCKING_READ.first(
        therapist_id=therapist_id,
        session_type_id=session_type_id,
        client_id=client.pk,
        start=start,
        end=start + timedelta(minutes=SESSION_MAX_MINUTES),
        jurisdiction=jurisdiction,
        now=now,
        licence_day=_licence_day(start=start, now=now),
    )
    if session_type is None:  # no such therapist, or no such active session type of theirs
        found = locks.lock_therapist(therapist_id=therapist_id)
        if found is None:
            return NotFoundError("No such therapist.")
        try:
            _session_type(therapist=found, session_type_id=session_type_id)
        except NotFoundError as missing:
            return missing
    assert session_type is not None
    therapist = session_type.therapist
    read = {name: getattr(session_type, name) for name in _LOCKING_READ_FACTS}
    holds_expired = read.pop("holds_expired")
    refusal = _refusal(
        client=client,
        therapist=therapist,
        session_type=session_type,
        start=start,
        jurisdiction=jurisdiction,
        now=now,
        # Read again (None) for the exact overlap, or whether a new client is known.
        facts=None if read["overlapping"] or not therapist.accepting_new_clients else read,
    )
    if refusal is not None:
        return refusal
    if holds_expired:  # out of the exclusion constraint's way before the insert
        _expire_holds(therapist=therapist, now=now)
    booking = _insert(
        client=client,
        therapist=therapist,
        session_type=session_type,
        policy=policy_of(therapist=therapist),
        start=start,
        jurisdiction=jurisdiction,
        series=None,
        now=now,
    )
    _created(booking, client=client, request=request, now=now)
    notifications.notify(bookings=[booking], kind=NotificationKind.BOOKED, now=now)
    _availability_changed(therapist=therapist)
    return booking


# --- Series -----------------------------------------------------------------------------------

ON_CONFLICT_SKIP = "skip"
ON_CONFLICT_ABORT = "abort"


@dataclass(frozen=True, slots=True)
class Occurrence:
    index: int
    start: datetime
    end: datetime
    code: str = ""  # why it cannot be booked; empty when it can (or was)
    booking: Booking | None = None


@dataclass
class SeriesOutcome:
    series: BookingSeries | None
    occurrences: list[Occurrence] = field(default_factory=list)

    @property
    def booked(self) -> list[Occurrence]:
        return [o for o in self.occurrences if o.booking is not None]

    @property
    def conflicts(self) -> list[Occurrence]:
        return [o for o in self.occurrences if o.code]


def series_starts(
    *, first_start: datetime, zone: ZoneInfo, frequency: str, count: int
) -> list[datetime]:
    """The occurrences' UTC starts: the first one's local wall time in ``zone`` on every
    (or every other) week, so 09:00 stays 09:00 across DST. A wall time that does not exist
    on a date (spring forward) maps to an instant the slot engine never offers."""
    local = first_start.astimezone(zone)
    step = 7 if frequency == SeriesFrequency.WEEKLY else 14
    wall = time(local.hour, local.minute, local.second)
    return [
        datetime.combine(local.date() + timedelta(days=step * k), wall, tzinfo=zone).astimezone(UTC)
        for k in range(count)
    ]


def _conflict_payload(occurrences: list[Occurrence]) -> list[dict[str, Any]]:
    return [
        {"index": o.index, "start": o.start.isoformat(), "code": o.code}
        for o in occurrences
        if o.code
    ]


@transaction.atomic
def booking_series_create(
    *,
    client: User,
    therapist_id: uuid.UUID,
    session_type_id: uuid.UUID,
    first_start: datetime,
    frequency: str,
    count: int,
    jurisdiction: str,
    on_conflict: str,
    dry_run: bool = False,
    request: HttpRequest | None = None,
    now: datetime,
) -> SeriesOutcome:
    """Book a weekly or fortnightly series: every occurrence is checked by the same rules as a
    single booking (``_refusal``), in order, each seeing the ones booked before it.

    Occurrences that cannot be booked are reported with a code; ``on_conflict="abort"`` then
    books none (409 ``series_conflicts`` listing them), ``"skip"`` books the rest (409 when none
    is left). ``dry_run`` reports what would happen and writes nothing."""
    _client_only(client)
    if not 1 <= count <= settings.BOOKING_SERIES_MAX_OCCURRENCES:
        raise UnprocessableError(
            f"A series has 1 to {settings.BOOKING_SERIES_MAX_OCCURRENCES} sessions.",
            code="series_too_long",
        )
    if dry_run:
        therapist = TherapistProfile.objects.filter(pk=therapist_id).first()
    else:
        therapist = locks.lock_parties(client_id=client.pk, therapist_id=therapist_id)
    if therapist is None:
        raise NotFoundError("No such therapist.")
    session_type = _session_type(therapist=therapist, session_type_id=session_type_id)
    length = timedelta(minutes=session_type.duration_minutes)
    starts = series_starts(
        first_start=first_start,
        zone=ZoneInfo(therapist.time_zone),
        frequency=frequency,
        count=count,
    )
    outcome = SeriesOutcome(series=None)
    if not dry_run:
        _expire_holds(therapist=therapist, now=now)
        outcome.series = BookingSeries.objects.create(
            client=client,
            therapist=therapist,
            frequency=frequency,
            requested_count=count,
            created_at=now,
        )
    policy = policy_of(therapist=therapist)
    for index, start in enumerate(starts):
        refusal = _refusal(
            client=client,
            therapist=therapist,
            session_type=session_type,
            start=start,
            jurisdiction=jurisdiction,
            now=now,
        )
        booking = None
        if refusal is None and not dry_run:
            booking = _insert(
                client=client,
                therapist=therapist,
                session_type=session_type,
                policy=policy,
                start=start,
                jurisdiction=jurisdiction,
                series=outcome.series,
                now=now,
            )
            _created(booking, client=client, request=request, now=now)
        code = refusal.code if refusal is not None else ""
        outcome.occurrences.append(Occurrence(index, start, start + length, code, booking))
    if dry_run:
        return outcome
    if outcome.conflicts and (on_conflict == ON_CONFLICT_ABORT or not outcome.booked):
        raise SeriesConflicts(  # rolls back the occurrences booked above
            "Some sessions of the series cannot be booked.",
            extra={"conflicts": _conflict_payload(outcome.occurrences)},
        )
    first = outcome.booked[0].booking
    assert first is not None and outcome.series is not None
    notifications.notify(
        bookings=[first],
        kind=NotificationKind.BOOKED,
        now=now,
        dedupe_key=f"{notifications.SERIES_KEY_PREFIX}{outcome.series.pk}",
    )
    _availability_changed(therapist=therapist)
    return outcome


# --- Existing bookings ------------------------------------------------------------------------


def _participant(booking: Booking | None, user: User) -> Booking:
    """The booking if ``user`` is its client or its therapist; anything else is a plain 404."""
    if booking is None or user.pk not in (booking.client_id, booking.therapist.user_id):
        raise NotFoundError("No such booking.")
    return booking


def _is_therapist(booking: Booking, user: User) -> bool:
    return user.pk == booking.therapist.user_id


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
    if actor is not None and not _is_therapist(_participant(booking, actor), actor):
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
    _availability_changed(therapist=booking.therapist)
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
    booking = _participant(locks.lock_booking_and_parties(booking_id=booking_id), by)
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
        terms=_terms(booking),
        start=booking.start,
        by_therapist=_is_therapist(booking, by),
        was_confirmed=was_confirmed,
        now=now,
    )
    _fee_request(booking, money, now=now)
    notifications.notify(bookings=[booking], kind=NotificationKind.CANCELLED, now=now)
    _availability_changed(therapist=booking.therapist)
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
    """Move a held or confirmed booking to ``start`` atomically: the new time is checked by the
    same rules as a new booking (ignoring the booking itself) and taken, and the old one freed,
    in one transaction, or nothing changes. A client may move a session only while it could
    still be cancelled for free; the therapist any time before it starts. Terms are kept."""
    booking = _participant(locks.lock_booking_and_parties(booking_id=booking_id), by)
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
    _expire_holds(therapist=therapist, now=now)
    # The booking's own length, even if the session type has changed since.
    length = SessionType(
        therapist=therapist, duration_minutes=(booking.end - booking.start) // timedelta(minutes=1)
    )
    refusal = _refusal(
        client=booking.client,
        therapist=therapist,
        session_type=length,
        start=start,
        jurisdiction=booking.client_jurisdiction,
        now=now,
        exclude=[booking.pk],
    )
    if refusal is not None:
        raise refusal
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
    _transition(
        booking,
        from_status=status,
        to_status=status,
        actor=by,
        reason="rescheduled",
        now=now,
        previous_start=previous,
    )
    _audit(booking, "reschedule", request=request, actor=by, details={"status": status})
    notifications.notify(bookings=[booking], kind=NotificationKind.RESCHEDULED, now=now)
    _availability_changed(therapist=therapist)
    return booking


def _after_start(
    *,
    booking_id: uuid.UUID,
    by: User | None,
    to_status: str,
    action: str,
    request: HttpRequest | None,
    now: datetime,
    evidence: Callable[..., dict[str, Any]],
) -> Booking:
    """The therapist (or, with ``by`` None, the system) records how a started session went;
    ``evidence`` (``video.evidence``: the room's attendance) may refuse, else its details are
    audited with the change."""
    booking = locks.lock_booking(booking_id=booking_id)
    if by is not None:
        booking = _participant(booking, by)
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
        evidence=video_evidence.completion_evidence,
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
        evidence=video_evidence.client_no_show_evidence,
    )
    _fee_request(booking, no_show_settlement(terms=_terms(booking), by_therapist=False), now=now)
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
        booking = _participant(booking, by)
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
    _fee_request(booking, no_show_settlement(terms=_terms(booking), by_therapist=True), now=now)
    notifications.notify(bookings=[booking], kind=NotificationKind.CANCELLED, now=now)
    return booking


def _terms(booking: Booking) -> Terms:
    return Terms(
        price_minor=booking.price_minor,
        free_until_hours=booking.cancel_free_hours,
        late_fee_kind=booking.late_fee_kind,
        late_fee_value=booking.late_fee_value,
    )


def _fee_request(booking: Booking, money: Settlement | None, *, now: datetime) -> None:
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


# --- Cancellation policy ----------------------------------------------------------------------


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


# --- Fee requests (called by billing) ---------------------------------------------------------


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
