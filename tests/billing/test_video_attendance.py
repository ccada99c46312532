"""The money side of a video session's attendance, through to Stripe (localstripe): the
therapist's no-show recorded from the room refunds everything; the client's no-show is kept
from the payment only when the room shows they did not come. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from api.models import User
from billing.models import Payment, Refund
from billing.services.lifecycle import fee_request_process, payment_refresh
from scheduling.bookings.services import booking_mark_no_show
from scheduling.models import Booking, FeeRequest
from tests.billing.conftest import WireRequest, booking_for, pay_at_localstripe, start_payment
from tests.billing.stripe_doubles import LocalStripe
from tests.clock import clock_instant
from video.evidence import ClientAttended
from video.models import AttendanceInterval, AttendanceKind, IntervalEnd, Participant, Room
from video.no_shows import therapist_no_shows_record

pytestmark = pytest.mark.django_db

NOW = clock_instant()
MINUTE = timedelta(minutes=1)


def paid_video_booking(
    localstripe: LocalStripe, client: User, therapist: User
) -> tuple[Booking, Payment]:
    """A video session two days ahead, paid at Stripe and confirmed, with its room."""
    held = booking_for(
        client=client, therapist=therapist, now=NOW, late_fee_kind="fixed", late_fee_value=5000
    )
    payment = start_payment(client=client, therapist=therapist, now=NOW, booking=held).payment
    pay_at_localstripe(localstripe, payment)
    payment = payment_refresh(payment_id=payment.pk, now=NOW)
    held.refresh_from_db()
    assert (held.status, payment.state) == ("confirmed", "succeeded")
    Room.objects.create(booking=held, mode="video", created_at=NOW)
    return held, payment


def came(booking: Booking, user: User, role: str, *, after: timedelta, minutes: int) -> None:
    """``user`` waited in ``booking``'s room from ``after`` the start for ``minutes``."""
    participant = Participant.objects.create(
        room=booking.video_room, user=user, role=role, created_at=NOW
    )
    AttendanceInterval.objects.create(
        participant=participant,
        kind=AttendanceKind.PRESENT,
        started_at=booking.start + after,
        ended_at=booking.start + after + minutes * MINUTE,
        end_reason=IntervalEnd.DETACHED,
    )


def test_a_therapist_no_show_from_attendance_refunds_everything(
    localstripe: LocalStripe, client_user: User, therapist: User, stripe_wire: list[WireRequest]
) -> None:
    """PAY-11 through the room: the client waited, the therapist never came; the job records
    the no-show and billing refunds the whole payment, whatever the late fee."""
    booking, payment = paid_video_booking(localstripe, client_user, therapist)
    came(booking, client_user, "client", after=-2 * MINUTE, minutes=20)

    assert therapist_no_shows_record(now=booking.start + 16 * MINUTE) == 1
    fee_request_process(
        fee_request_id=FeeRequest.objects.get(booking=booking).pk, now=booking.start
    )

    payment.refresh_from_db()
    assert (payment.state, payment.amount_refunded_minor) == ("refunded", 12000)
    assert Refund.objects.get(payment=payment).reason == "therapist_no_show"
    assert not Payment.objects.exclude(purpose="session").exists()  # no fee
    refunds = [r.idempotency_key for r in stripe_wire if r.url.endswith("/v1/refunds")]
    assert refunds == [f"billing:refund:{payment.pk}:1"]


def test_a_client_no_show_keeps_the_fee_only_when_the_room_shows_they_did_not_come(
    localstripe: LocalStripe, client_user: User, therapist: User, stripe_wire: list[WireRequest]
) -> None:
    """The therapist waited; the client came after the deadline: the no-show keeps the late
    fee from the payment. A client who came by the deadline cannot be charged it."""
    booking, payment = paid_video_booking(localstripe, client_user, therapist)
    came(booking, therapist, "therapist", after=-5 * MINUTE, minutes=30)
    came(booking, client_user, "client", after=17 * MINUTE, minutes=1)

    booking_mark_no_show(booking_id=booking.pk, by=therapist, now=booking.start + 20 * MINUTE)
    fee_request_process(
        fee_request_id=FeeRequest.objects.get(booking=booking).pk, now=booking.start
    )
    payment.refresh_from_db()
    assert (payment.state, payment.amount_refunded_minor) == ("partially_refunded", 7000)
    assert Refund.objects.get(payment=payment).reason == "client_no_show"

    other, other_payment = paid_video_booking(localstripe, client_user, therapist)
    came(other, client_user, "client", after=14 * MINUTE, minutes=1)
    with pytest.raises(ClientAttended):
        booking_mark_no_show(booking_id=other.pk, by=therapist, now=other.start + 20 * MINUTE)
    assert not FeeRequest.objects.filter(booking=other).exists()
    other_payment.refresh_from_db()
    assert (other_payment.state, other_payment.amount_refunded_minor) == ("succeeded", 0)
