"""The booking lifecycle through its services: holds and terms, refusals that change nothing,
the state machine (illegal transitions are 409 with the current status), cancellation fee
requests, atomic reschedules, expiring holds, and the fee-request hand-over to billing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone

from api.errors import ConflictError, ForbiddenError, NotFoundError
from api.models import Role
from audit.models import AuditEvent
from scheduling import services as scheduling_services
from scheduling.bookings import services
from scheduling.bookings.errors import (
    ClientOverlap,
    HoldExpired,
    IllegalTransition,
    NotAcceptingNewClients,
    NotLicensed,
    RescheduleTooLate,
    SlotUnavailable,
)
from scheduling.models import (
    Booking,
    BookingNotification,
    BookingStatus,
    BookingTransition,
    FeeRequest,
    FeeRequestKind,
    FeeRequestState,
    LateFeeKind,
    SessionType,
    TherapistProfile,
)
from tests.factories import make_user
from tests.scheduling.bookings.conftest import NOW, book, open_starts, session_type_of
from tests.scheduling.conftest import make_therapist

pytestmark = pytest.mark.django_db


def _snapshot() -> tuple[int, ...]:
    return (
        Booking.objects.count(),
        BookingTransition.objects.count(),
        FeeRequest.objects.count(),
        BookingNotification.objects.count(),
        AuditEvent.objects.filter(resource_type="scheduling.booking").count(),
        TherapistProfile.objects.filter(availability_computed_at__isnull=True).count(),
    )


def _booking_events(booking: Booking) -> list[tuple[str, str]]:
    rows = AuditEvent.objects.filter(resource_type="scheduling.booking", resource_id=booking.pk)
    return [(e.action, e.details.get("to", "")) for e in rows.order_by("id")]


# --- Creating ---------------------------------------------------------------------------------


def test_a_paid_booking_is_a_hold_with_the_price_and_policy_copied_on(profile, client_user, slot):
    services.cancellation_policy_set(
        therapist=profile,
        free_until_hours=48,
        late_fee_kind=LateFeeKind.PERCENT,
        late_fee_value=50,
        now=NOW,
    )
    booking = book(client_user, profile, slot)

    assert booking.status == BookingStatus.HELD
    assert booking.hold_expires_at == NOW + timedelta(minutes=15)
    assert (booking.start, booking.end) == (slot, slot + timedelta(minutes=50))
    assert (booking.price_minor, booking.currency, booking.client_jurisdiction) == (
        12000,
        "USD",
        "US-NY",
    )
    assert (booking.cancel_free_hours, booking.late_fee_kind, booking.late_fee_value) == (
        48,
        "percent",
        50,
    )
    transition = BookingTransition.objects.get(booking=booking)
    assert (transition.from_status, transition.to_status, transition.actor_id) == (
        "",
        "held",
        client_user.pk,
    )
    event = AuditEvent.objects.get(resource_type="scheduling.booking", resource_id=booking.pk)
    assert (event.action, event.actor_id, event.patient_id) == (
        "create",
        client_user.pk,
        client_user.pk,
    )

    # Later changes to the therapist's settings leave the booking's terms alone.
    scheduling_services.session_type_update(
        session_type=session_type_of(profile), fields={"price_minor": 20000}, now=NOW
    )
    services.cancellation_policy_set(
        therapist=profile, free_until_hours=2, late_fee_kind="none", late_fee_value=0, now=NOW
    )
    booking.refresh_from_db()
    assert (booking.price_minor, booking.cancel_free_hours, booking.late_fee_value) == (
        12000,
        48,
        50,
    )


def test_a_free_session_is_confirmed_at_once(profile, client_user, slot):
    free = scheduling_services.session_type_create(
        profile=profile,
        name="Intro call",
        duration_minutes=20,
        price_minor=0,
        currency="USD",
        delivery="video",
        now=NOW,
    )
    booking = book(client_user, profile, slot, session_type=free)
    assert booking.status == BookingStatus.CONFIRMED and booking.hold_expires_at is None
    assert booking.end - booking.start == timedelta(minutes=20)


def test_booking_marks_the_directory_summary_stale(profile, client_user, slot):
    assert TherapistProfile.objects.get(pk=profile.pk).availability_computed_at is not None
    book(client_user, profile, slot)
    assert TherapistProfile.objects.get(pk=profile.pk).availability_computed_at is None


# --- Refusals change nothing --------------------------------------------------------------------


def test_a_time_the_slot_engine_does_not_offer_is_refused(profile, client_user, slot):
    before = _snapshot()
    for start in (
        slot + timedelta(minutes=10),  # off the 30-minute grid
        slot - timedelta(hours=1),  # 08:00 local, before opening
        NOW + timedelta(hours=2),  # inside the 24 h notice
        slot + timedelta(days=4),  # Saturday
        slot + timedelta(days=90),  # beyond the 60-day horizon
    ):
        with pytest.raises(SlotUnavailable):
            book(client_user, profile, start)
    assert _snapshot() == before


def test_a_slot_taken_or_held_by_someone_else_is_refused(profile, client_user, outsider, slot):
    book(outsider, profile, slot)  # a live hold
    before = _snapshot()
    with pytest.raises(SlotUnavailable) as refused:
        book(client_user, profile, slot)
    assert refused.value.status_code == 409 and refused.value.code == "slot_unavailable"
    # Buffers: the next grid start overlaps the 50-minute session too.
    with pytest.raises(SlotUnavailable):
        book(client_user, profile, slot + timedelta(minutes=30))
    assert _snapshot() == before
    assert book(client_user, profile, slot + timedelta(minutes=60)).status == BookingStatus.HELD


def test_an_expired_hold_blocks_nothing_and_is_cancelled_by_the_next_booking(
    profile, client_user, outsider, slot
):
    stale = book(outsider, profile, slot)
    later = NOW + timedelta(minutes=15)  # exactly when the hold expires
    booking = book(client_user, profile, slot, now=later)
    assert booking.status == BookingStatus.HELD
    stale.refresh_from_db()
    assert stale.status == BookingStatus.CANCELLED
    expired = BookingTransition.objects.get(booking=stale, to_status="cancelled")
    assert (expired.actor_id, expired.actor_label, expired.reason) == (
        None,
        "system",
        "hold_expired",
    )
    assert ("expire", "cancelled") in _booking_events(stale)


def test_the_therapist_must_be_licensed_where_the_client_is(profile, client_user, slot):
    before = _snapshot()
    with pytest.raises(NotLicensed) as refused:
        book(client_user, profile, slot, jurisdiction="US-CA")
    assert refused.value.status_code == 422
    assert _snapshot() == before


def test_a_refused_booking_leaves_the_callers_transaction_usable(profile, client_user, slot):
    """``booking_create`` takes no savepoint: it raises its refusals after its block, so the
    caller's transaction is not doomed and goes on (docs/adr/0006-savepoint-free-booking.md)."""
    with transaction.atomic():
        with pytest.raises(NotLicensed):
            book(client_user, profile, slot, jurisdiction="US-CA")
        assert book(client_user, profile, slot).start == slot
    assert Booking.objects.filter(client=client_user).count() == 1


def test_a_client_cannot_hold_two_overlapping_sessions(profile, other_profile, client_user, slot):
    book(client_user, profile, slot)
    # The London therapist's 14:00 (13:00 UTC) is the same instant as New York's 09:00.
    before = _snapshot()
    with pytest.raises(ClientOverlap):
        book(client_user, other_profile, slot, jurisdiction="GB")
    assert _snapshot() == before
    assert book(client_user, other_profile, slot + timedelta(hours=1), jurisdiction="GB")


def test_a_clients_later_session_on_the_same_day_does_not_refuse_an_earlier_one(
    profile, other_profile, client_user, slot
):
    """The overlap is first looked for within the longest possible session (8 hours) in the
    locking statement; a session found there that does not overlap this one refuses nothing."""
    theirs = open_starts(other_profile)
    start = next(s for s in theirs if slot + timedelta(hours=1) < s < slot + timedelta(hours=7))
    later = book(client_user, other_profile, start, jurisdiction="GB")
    booking = book(client_user, profile, slot)
    assert booking.end < later.start < booking.start + timedelta(hours=8)
    with pytest.raises(ClientOverlap):  # while one that does overlap still refuses
        book(client_user, other_profile, slot, jurisdiction="GB")


def test_the_daily_maximum_is_checked_under_the_therapists_lock(profile, client_user, outsider):
    scheduling_services.therapist_profile_update(
        profile=profile, fields={"max_sessions_per_day": 1}, now=NOW
    )
    first, *rest = open_starts(profile)
    book(client_user, profile, first)
    same_day = [s for s in rest if s.date() == first.date()]
    with pytest.raises(SlotUnavailable):
        book(outsider, profile, same_day[-1])
    next_day = [s for s in rest if s.date() > first.date()]
    assert book(outsider, profile, next_day[0]).status == BookingStatus.HELD


def test_a_hold_that_ran_out_does_not_make_a_client_known(profile, client_user, slot):
    hold = book(client_user, profile, slot)
    assert hold.status == BookingStatus.HELD
    scheduling_services.therapist_profile_update(
        profile=profile, fields={"accepting_new_clients": False}, now=NOW
    )
    later = NOW + timedelta(minutes=settings.BOOKING_HOLD_MINUTES + 1)

    with pytest.raises(NotAcceptingNewClients):
        book(client_user, profile, slot + timedelta(hours=2), now=later)
    # Refused before anything was written: the hold that ran out is cancelled by the next
    # booking that goes through, or by the tidy-up job.
    assert Booking.objects.get(pk=hold.pk).status == BookingStatus.HELD


def test_a_therapist_not_taking_new_clients_still_sees_existing_ones(
    profile, client_user, outsider, slot
):
    book(client_user, profile, slot)
    scheduling_services.therapist_profile_update(
        profile=profile, fields={"accepting_new_clients": False}, now=NOW
    )
    with pytest.raises(NotAcceptingNewClients):
        book(outsider, profile, slot + timedelta(hours=2))
    assert book(client_user, profile, slot + timedelta(hours=2))


def test_only_clients_book_and_unknown_or_archived_targets_are_404(profile, therapist, slot):
    client = make_user(role=Role.CLIENT)
    with pytest.raises(ForbiddenError):
        book(therapist, profile, slot)
    with pytest.raises(NotFoundError) as unknown:
        services.booking_create(
            client=client,
            therapist_id=client.pk,  # not a therapist id
            session_type_id=session_type_of(profile).pk,
            start=slot,
            jurisdiction="US-NY",
            now=NOW,
        )
    assert unknown.value.code == "not_found"
    archived = session_type_of(profile)
    scheduling_services.session_type_archive(session_type=archived, now=NOW)
    with pytest.raises(NotFoundError) as gone:
        book(client, profile, slot, session_type=archived)
    assert gone.value.code == "session_type_not_found"
    assert not Booking.objects.exists()


# --- The state machine ---------------------------------------------------------------------------


def test_billing_confirms_a_hold_once(profile, client_user, slot):
    booking = book(client_user, profile, slot)
    confirmed = services.booking_confirm(booking_id=booking.pk, now=NOW + timedelta(minutes=5))
    assert confirmed.status == BookingStatus.CONFIRMED and confirmed.hold_expires_at is None
    assert confirmed.sequence == 1
    transition = BookingTransition.objects.get(booking=booking, to_status="confirmed")
    assert (transition.from_status, transition.actor_label, transition.reason) == (
        "held",
        "billing",
        "payment_succeeded",
    )
    event = AuditEvent.objects.get(resource_id=booking.pk, action="confirm")
    assert (event.actor_label, event.patient_id) == ("billing", client_user.pk)

    before = _snapshot()
    with pytest.raises(IllegalTransition) as refused:
        services.booking_confirm(booking_id=booking.pk, now=NOW + timedelta(minutes=6))
    assert refused.value.status_code == 409
    assert refused.value.current_status == "confirmed"
    assert refused.value.extra == {"current_status": "confirmed"}
    assert _snapshot() == before


def test_a_hold_that_ran_out_cannot_be_confirmed(profile, client_user, slot):
    booking = book(client_user, profile, slot)
    with pytest.raises(HoldExpired) as refused:
        services.booking_confirm(booking_id=booking.pk, now=NOW + timedelta(minutes=15))
    assert refused.value.code == "hold_expired" and isinstance(refused.value, IllegalTransition)
    assert Booking.objects.get(pk=booking.pk).status == BookingStatus.HELD


def test_billing_releases_a_hold_idempotently_but_never_a_confirmed_booking(
    profile, client_user, outsider, slot
):
    booking = book(client_user, profile, slot)
    released = services.booking_release(booking_id=booking.pk, now=NOW + timedelta(minutes=1))
    assert released.status == BookingStatus.CANCELLED
    assert not FeeRequest.objects.exists()
    again = services.booking_release(booking_id=booking.pk, now=NOW + timedelta(minutes=2))
    assert again.status == BookingStatus.CANCELLED
    assert BookingTransition.objects.filter(booking=booking).count() == 2
    # The slot is free at once.
    other = book(outsider, profile, slot, now=NOW + timedelta(minutes=2))
    services.booking_confirm(booking_id=other.pk, now=NOW + timedelta(minutes=3))
    with pytest.raises(IllegalTransition):
        services.booking_release(booking_id=other.pk, now=NOW + timedelta(minutes=4))


def test_the_therapist_completes_or_marks_a_no_show_only_once_it_started(
    profile, therapist, client_user, slot
):
    booking = book(client_user, profile, slot)
    services.booking_confirm(booking_id=booking.pk, now=NOW)
    with pytest.raises(ForbiddenError):
        services.booking_complete(booking_id=booking.pk, by=client_user, now=slot)
    with pytest.raises(ConflictError) as early:
        services.booking_complete(booking_id=booking.pk, by=therapist, now=slot - timedelta(1))
    assert early.value.code == "not_started"
    done = services.booking_complete(booking_id=booking.pk, by=therapist, now=slot)
    assert done.status == BookingStatus.COMPLETED
    with pytest.raises(IllegalTransition) as refused:
        services.booking_mark_no_show(booking_id=booking.pk, by=therapist, now=slot)
    assert refused.value.current_status == "completed"


@pytest.mark.parametrize("final", ["cancelled", "completed", "no_show"])
def test_final_states_allow_no_further_transition(profile, therapist, client_user, slot, final):
    booking = book(client_user, profile, slot)
    services.booking_confirm(booking_id=booking.pk, now=NOW)
    if final == "cancelled":
        services.booking_cancel(booking_id=booking.pk, by=client_user, reason="other", now=NOW)
    elif final == "completed":
        services.booking_complete(booking_id=booking.pk, by=therapist, now=slot)
    else:  # a video session: from its no-show deadline on
        after = slot + timedelta(minutes=settings.VIDEO_NO_SHOW_MINUTES)
        services.booking_mark_no_show(booking_id=booking.pk, by=therapist, now=after)
    before = _snapshot()
    attempts = [
        lambda: services.booking_confirm(booking_id=booking.pk, now=slot),
        lambda: services.booking_cancel(
            booking_id=booking.pk, by=client_user, reason="other", now=slot
        ),
        lambda: services.booking_complete(booking_id=booking.pk, by=therapist, now=slot),
        lambda: services.booking_reschedule(
            booking_id=booking.pk, by=therapist, start=slot + timedelta(days=1), now=NOW
        ),
    ]
    for attempt in attempts:
        with pytest.raises(IllegalTransition) as refused:
            attempt()
        assert refused.value.current_status == final
    assert _snapshot() == before


def test_someone_else_cannot_touch_a_booking_az_01(profile, other_therapist, outsider, slot):
    """AZ-01 at the service level: not a participant is a plain 404."""
    booking = book(make_user(role=Role.CLIENT), profile, slot)
    before = _snapshot()
    for user in (outsider, other_therapist):
        with pytest.raises(NotFoundError):
            services.booking_cancel(booking_id=booking.pk, by=user, reason="other", now=NOW)
        with pytest.raises(NotFoundError):
            services.booking_reschedule(
                booking_id=booking.pk, by=user, start=slot + timedelta(hours=1), now=NOW
            )
    with pytest.raises(NotFoundError):
        services.booking_confirm(booking_id=booking.pk, actor=other_therapist, now=NOW)
    assert _snapshot() == before


# --- Cancelling ----------------------------------------------------------------------------------


def _confirmed(client, profile, start):
    booking = book(client, profile, start)
    return services.booking_confirm(booking_id=booking.pk, now=NOW)


def test_a_client_cancelling_in_time_gets_a_full_refund_request(profile, client_user, slot):
    booking = _confirmed(client_user, profile, slot)
    cancelled = services.booking_cancel(
        booking_id=booking.pk, by=client_user, reason="schedule_conflict", now=slot - timedelta(1)
    )
    assert cancelled.status == BookingStatus.CANCELLED
    fee = FeeRequest.objects.get(booking=booking)
    assert (fee.kind, fee.reason, fee.fee_minor, fee.refund_minor, fee.currency) == (
        FeeRequestKind.FULL_REFUND,
        "client_cancelled_in_time",
        0,
        12000,
        "USD",
    )
    assert fee.state == FeeRequestState.PENDING
    transition = BookingTransition.objects.get(booking=booking, to_status="cancelled")
    assert (transition.actor_id, transition.reason) == (client_user.pk, "schedule_conflict")


def test_a_client_cancelling_late_is_charged_the_copied_fee_never_here(profile, client_user, slot):
    services.cancellation_policy_set(
        therapist=profile, free_until_hours=24, late_fee_kind="fixed", late_fee_value=4000, now=NOW
    )
    booking = _confirmed(client_user, profile, slot)
    services.cancellation_policy_set(
        therapist=profile, free_until_hours=1, late_fee_kind="none", late_fee_value=0, now=NOW
    )
    services.booking_cancel(
        booking_id=booking.pk, by=client_user, reason="personal", now=slot - timedelta(hours=3)
    )
    fee = FeeRequest.objects.get(booking=booking)
    assert (fee.kind, fee.reason, fee.fee_minor, fee.refund_minor) == (
        FeeRequestKind.LATE_CANCELLATION_FEE,
        "client_cancelled_late",
        4000,
        8000,
    )


def test_a_therapist_cancelling_late_refunds_in_full(profile, therapist, client_user, slot):
    services.cancellation_policy_set(
        therapist=profile, free_until_hours=24, late_fee_kind="percent", late_fee_value=100, now=NOW
    )
    booking = _confirmed(client_user, profile, slot)
    services.booking_cancel(
        booking_id=booking.pk,
        by=therapist,
        reason="therapist_unavailable",
        now=slot - timedelta(minutes=10),
    )
    fee = FeeRequest.objects.get(booking=booking)
    assert (fee.kind, fee.reason, fee.fee_minor, fee.refund_minor) == (
        FeeRequestKind.FULL_REFUND,
        "therapist_cancelled",
        0,
        12000,
    )


def test_cancelling_a_hold_releases_it_and_frees_the_slot(profile, client_user, outsider, slot):
    booking = book(client_user, profile, slot)
    services.booking_cancel(booking_id=booking.pk, by=client_user, reason="other", now=NOW)
    assert FeeRequest.objects.get(booking=booking).reason == "hold_released"
    assert book(outsider, profile, slot).status == BookingStatus.HELD


def test_fee_requests_are_claimed_by_one_billing_worker_and_settled(profile, client_user, slot):
    booking = _confirmed(client_user, profile, slot)
    services.booking_cancel(booking_id=booking.pk, by=client_user, reason="other", now=NOW)
    from scheduling.bookings.selectors import fee_requests_pending

    pending = list(fee_requests_pending())
    assert [f.booking_id for f in pending] == [booking.pk]
    fee_id = pending[0].pk
    assert services.fee_request_claim(fee_request_id=fee_id, now=NOW)
    assert not services.fee_request_claim(fee_request_id=fee_id, now=NOW + timedelta(minutes=1))
    assert services.fee_request_claim(fee_request_id=fee_id, now=NOW + timedelta(minutes=5))
    services.fee_request_settle(fee_request_id=fee_id, now=NOW)
    services.fee_request_settle(fee_request_id=fee_id, now=NOW)
    assert FeeRequest.objects.get(pk=fee_id).state == FeeRequestState.SETTLED
    assert not fee_requests_pending().exists()


# --- Rescheduling --------------------------------------------------------------------------------


def test_a_reschedule_takes_the_new_time_and_frees_the_old_in_one_step(
    profile, client_user, outsider, slot
):
    booking = _confirmed(client_user, profile, slot)
    new_start = slot + timedelta(days=1, hours=2)
    moved = services.booking_reschedule(
        booking_id=booking.pk, by=client_user, start=new_start, now=NOW
    )
    assert (moved.start, moved.end, moved.status) == (
        new_start,
        new_start + timedelta(minutes=50),
        BookingStatus.CONFIRMED,
    )
    assert moved.sequence == 2  # confirmed, then moved
    transition = BookingTransition.objects.get(booking=booking, reason="rescheduled")
    assert (transition.previous_start, transition.from_status, transition.to_status) == (
        slot,
        "confirmed",
        "confirmed",
    )
    assert book(outsider, profile, slot).status == BookingStatus.HELD
    with pytest.raises(SlotUnavailable):
        book(outsider, profile, new_start)


def test_a_reschedule_may_overlap_its_own_old_time(profile, client_user, slot):
    booking = _confirmed(client_user, profile, slot)
    moved = services.booking_reschedule(
        booking_id=booking.pk, by=client_user, start=slot + timedelta(minutes=30), now=NOW
    )
    assert moved.start == slot + timedelta(minutes=30)


def test_a_refused_reschedule_changes_nothing(profile, client_user, outsider, slot):
    booking = _confirmed(client_user, profile, slot)
    taken = slot + timedelta(hours=2)
    book(outsider, profile, taken)
    before = _snapshot()
    with pytest.raises(SlotUnavailable):
        services.booking_reschedule(booking_id=booking.pk, by=client_user, start=taken, now=NOW)
    booking.refresh_from_db()
    assert (booking.start, booking.sequence) == (slot, 1)
    assert _snapshot() == before


def test_a_client_moves_a_session_only_while_cancelling_is_free_the_therapist_any_time(
    profile, therapist, client_user, slot
):
    booking = _confirmed(client_user, profile, slot)
    late = slot - timedelta(hours=23)
    with pytest.raises(RescheduleTooLate):
        services.booking_reschedule(
            booking_id=booking.pk, by=client_user, start=slot + timedelta(days=2), now=late
        )
    moved = services.booking_reschedule(
        booking_id=booking.pk, by=therapist, start=slot + timedelta(days=2), now=late
    )
    assert moved.start == slot + timedelta(days=2)


# --- Expiring holds ------------------------------------------------------------------------------


def test_expire_holds_tidies_once_however_often_it_runs(profile, client_user, outsider, slot):
    expired = book(client_user, profile, slot)
    live = book(outsider, profile, slot + timedelta(hours=2), now=NOW + timedelta(minutes=10))
    later = NOW + timedelta(minutes=16)
    assert services.holds_expire(now=later) == 1
    assert services.holds_expire(now=later) == 0
    expired.refresh_from_db()
    live.refresh_from_db()
    assert (expired.status, live.status) == (BookingStatus.CANCELLED, BookingStatus.HELD)
    assert BookingTransition.objects.filter(booking=expired, reason="hold_expired").count() == 1
    # The command runs on the real clock, long after both holds ran out: it tidies the other.
    out = StringIO()
    call_command("expire_holds", stdout=out)
    call_command("expire_holds", stdout=out)
    assert out.getvalue().splitlines() == [
        "expire_holds: 1 holds cancelled",
        "expire_holds: 0 holds cancelled",
    ]


def test_sessions_keep_their_own_length_when_the_session_type_changes(profile, client_user, slot):
    booking = _confirmed(client_user, profile, slot)
    SessionType.objects.filter(pk=booking.session_type_id).update(duration_minutes=90)
    moved = services.booking_reschedule(
        booking_id=booking.pk, by=client_user, start=slot + timedelta(days=1), now=NOW
    )
    assert moved.end - moved.start == timedelta(minutes=50)


def test_a_london_therapist_and_a_new_york_client_agree_on_one_instant(other_profile, client_user):
    """Different zones: the booking stores the UTC instant the slot list offered."""
    start = open_starts(other_profile)[0]
    booking = book(client_user, other_profile, start, jurisdiction="GB")
    assert booking.start == start and start.utcoffset() == timedelta(0)


def test_the_free_period_counts_real_hours_across_dst_whatever_the_clients_zone(client_user):
    """Edges of the policy on a real booking: a Monday 09:00 New York session just after the
    spring-forward night; 36 hours free. Exactly 36 real hours before (Saturday 20:00 EST) is
    free; Saturday 21:00, 36 wall-clock hours but 35 real ones before, is late, even written in
    the client's Kolkata time."""
    ny, kolkata = ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata")
    march = datetime(2025, 3, 3, 12, tzinfo=UTC)
    profile = make_therapist(now=march)
    services.cancellation_policy_set(
        therapist=profile,
        free_until_hours=36,
        late_fee_kind="percent",
        late_fee_value=50,
        now=march,
    )
    start = datetime(2025, 3, 10, 9, tzinfo=ny).astimezone(UTC)
    in_time = book(client_user, profile, start, now=march)
    services.booking_confirm(booking_id=in_time.pk, now=march)
    services.booking_cancel(
        booking_id=in_time.pk,
        by=client_user,
        reason="other",
        now=datetime(2025, 3, 8, 20, tzinfo=ny).astimezone(kolkata),
    )
    assert FeeRequest.objects.get(booking=in_time).reason == "client_cancelled_in_time"

    late = book(client_user, profile, start, now=march)
    services.booking_confirm(booking_id=late.pk, now=march)
    services.booking_cancel(
        booking_id=late.pk,
        by=client_user,
        reason="other",
        now=datetime(2025, 3, 8, 21, tzinfo=ny).astimezone(kolkata),
    )
    fee = FeeRequest.objects.get(booking=late)
    assert (fee.reason, fee.fee_minor, fee.refund_minor) == ("client_cancelled_late", 6000, 6000)


# --- No-shows -----------------------------------------------------------------------------------


def test_a_client_no_show_asks_billing_for_the_late_fee_as_a_no_show_fee(
    profile, therapist, client_user, slot
):
    services.cancellation_policy_set(
        therapist=profile,
        free_until_hours=24,
        late_fee_kind=LateFeeKind.PERCENT,
        late_fee_value=50,
        now=NOW,
    )
    booking = book(client_user, profile, slot)
    services.booking_confirm(booking_id=booking.pk, now=NOW)

    after = slot + timedelta(minutes=settings.VIDEO_NO_SHOW_MINUTES)  # a video session's deadline
    services.booking_mark_no_show(booking_id=booking.pk, by=therapist, now=after)

    fee_request = FeeRequest.objects.get(booking=booking)
    assert (
        fee_request.kind,
        fee_request.reason,
        fee_request.fee_minor,
        fee_request.refund_minor,
    ) == (FeeRequestKind.NO_SHOW_FEE, "client_no_show", 6000, 6000)


def test_pay_11_the_therapist_not_coming_cancels_with_a_full_refund_and_no_fee(
    profile, therapist, other_therapist, client_user, slot
):
    """PAY-11: the therapist no-shows (reported by themselves) → full refund, no fee, whatever
    the late fee; only after the start, only for a confirmed session, only by its therapist."""
    services.cancellation_policy_set(
        therapist=profile,
        free_until_hours=24,
        late_fee_kind=LateFeeKind.PERCENT,
        late_fee_value=100,
        now=NOW,
    )
    booking = book(client_user, profile, slot)
    with pytest.raises(IllegalTransition):  # held: nothing was to happen yet
        services.booking_therapist_no_show(booking_id=booking.pk, by=therapist, now=slot)
    services.booking_confirm(booking_id=booking.pk, now=NOW)
    with pytest.raises(ConflictError) as early:
        services.booking_therapist_no_show(
            booking_id=booking.pk, by=therapist, now=slot - timedelta(minutes=1)
        )
    assert early.value.code == "not_started"
    with pytest.raises(ForbiddenError):
        services.booking_therapist_no_show(booking_id=booking.pk, by=client_user, now=slot)
    with pytest.raises(NotFoundError):
        services.booking_therapist_no_show(booking_id=booking.pk, by=other_therapist, now=slot)
    assert not FeeRequest.objects.exists()

    done = services.booking_therapist_no_show(
        booking_id=booking.pk, by=therapist, now=slot + timedelta(minutes=20)
    )

    assert done.status == BookingStatus.CANCELLED
    transition = BookingTransition.objects.filter(booking=booking).order_by("id").last()
    assert (transition.reason, transition.actor_id) == ("therapist_no_show", therapist.pk)
    fee_request = FeeRequest.objects.get(booking=booking)
    assert (fee_request.kind, fee_request.reason, fee_request.fee_minor) == (
        FeeRequestKind.FULL_REFUND,
        "therapist_no_show",
        0,
    )
    assert fee_request.refund_minor == 12000
    assert ("therapist_no_show", "cancelled") in _booking_events(booking)


def test_an_admin_records_a_therapist_no_show_after_the_client_complains(
    profile, therapist, client_user, admin_user, slot
):
    booking = book(client_user, profile, slot)
    services.booking_confirm(booking_id=booking.pk, now=NOW)
    with pytest.raises(CommandError):  # only an admin
        call_command("record_therapist_no_show", str(booking.pk), "--by", therapist.email)
    assert Booking.objects.get(pk=booking.pk).status == BookingStatus.CONFIRMED
    started, ended = timezone.now() - timedelta(hours=2), timezone.now() - timedelta(hours=1)
    Booking.objects.filter(pk=booking.pk).update(  # the command runs at the real time
        start=started, end=ended, blocked_start=started, blocked_end=ended
    )
    out = StringIO()

    call_command("record_therapist_no_show", str(booking.pk), "--by", admin_user.email, stdout=out)

    assert "therapist_no_show" in out.getvalue()
    transition = BookingTransition.objects.filter(booking=booking).order_by("id").last()
    assert (transition.to_status, transition.actor_id) == ("cancelled", admin_user.pk)
    assert FeeRequest.objects.get(booking=booking).reason == "therapist_no_show"
