"""What payments do to bookings, and what cancellations ask of billing (through localstripe).

Bookings are made relative to the real time: the booking services compare holds with ``now``,
and webhooks are applied at the real time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.core.management import call_command

from api.models import User
from audit.models import AuditEvent
from billing import gateways
from billing.gateways.stripe import StripeGateway
from billing.models import Payment, Refund
from billing.services.lifecycle import billing_settle, fee_request_process, payment_refresh
from billing.tasks import send_refund
from scheduling.bookings.services import (
    booking_cancel,
    booking_mark_no_show,
    booking_therapist_no_show,
)
from scheduling.models import Booking, BookingStatus, FeeRequest
from tests.billing.conftest import (
    WireRequest,
    booking_for,
    make_payment,
    pay_at_localstripe,
    start_payment,
)
from tests.billing.stripe_doubles import LocalStripe, Reply, scripted_stripe
from tests.clock import clock_instant
from tests.live import free_port

pytestmark = pytest.mark.integration

NOW = clock_instant()  # the instant the views run at (tests/clock.py)


def paid_booking(
    localstripe: LocalStripe, client: User, therapist: User, **booking: Any
) -> tuple[Booking, Payment]:
    """A booking held, paid at Stripe, and confirmed (as the webhook would)."""
    held = booking_for(client=client, therapist=therapist, now=NOW, **booking)
    payment = start_payment(client=client, therapist=therapist, now=NOW, booking=held).payment
    pay_at_localstripe(localstripe, payment)
    payment = payment_refresh(payment_id=payment.pk, now=NOW)
    held.refresh_from_db()
    assert (held.status, payment.state) == ("confirmed", "succeeded")
    return held, payment


def refunds_sent(wire: list[WireRequest]) -> list[str | None]:
    return [r.idempotency_key for r in wire if r.url.endswith("/v1/refunds")]


def test_a_collected_payment_confirms_its_held_booking(
    localstripe: LocalStripe, client_user: User, therapist: User
) -> None:
    booking, payment = paid_booking(localstripe, client_user, therapist)
    assert booking.transitions.order_by("id").last().reason == "payment_succeeded"
    assert payment.history.order_by("id").last().to_state == "succeeded"


def test_paid_after_the_hold_ran_out_is_refunded_and_the_client_told(
    localstripe: LocalStripe,
    client_user: User,
    therapist: User,
    stripe_wire: list[WireRequest],
    django_capture_on_commit_callbacks: Any,
) -> None:
    held = booking_for(client=client_user, therapist=therapist, now=NOW)
    payment = start_payment(client=client_user, therapist=therapist, now=NOW, booking=held).payment
    pay_at_localstripe(localstripe, payment)
    later = NOW + timedelta(minutes=20)  # the 15-minute hold is over

    with django_capture_on_commit_callbacks(execute=True):
        payment_refresh(payment_id=payment.pk, now=later)

    held.refresh_from_db()
    payment.refresh_from_db()
    assert held.status == BookingStatus.CANCELLED
    assert (payment.state, payment.amount_refunded_minor) == ("refunded", 12000)
    refund = Refund.objects.get(payment=payment)
    assert (refund.reason, refund.state) == ("slot_lost", "succeeded")
    assert refunds_sent(stripe_wire) == [f"billing:refund:{payment.pk}:1"]
    assert AuditEvent.objects.filter(action="billing.payment.slot_lost").count() == 1
    (message,) = [m for m in mail.outbox if m.subject == "Your payment is being refunded"]
    assert message.to == [client_user.email]
    assert "120.00 USD is being refunded" in message.body
    assert client_user.full_name not in message.body
    # The refund was sent by its task; a second run (a retry, a late duplicate) sends nothing.
    send_refund.apply(kwargs={"refund_id": str(refund.pk)}, throw=True)
    assert refunds_sent(stripe_wire) == [f"billing:refund:{payment.pk}:1"]
    assert Refund.objects.get(pk=refund.pk).state == "succeeded"


def test_paid_after_the_hold_ran_out_with_stripe_down_still_tells_the_client_at_once(
    localstripe: LocalStripe,
    client_user: User,
    therapist: User,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """The refund is owed from the commit on: the email goes out with it, not only once Stripe
    has taken the refund (billing_settle sends that later)."""
    held = booking_for(client=client_user, therapist=therapist, now=NOW)
    payment = start_payment(client=client_user, therapist=therapist, now=NOW, booking=held).payment
    pay_at_localstripe(localstripe, payment)
    later = NOW + timedelta(minutes=20)

    with django_capture_on_commit_callbacks() as after_commit:
        payment_refresh(payment_id=payment.pk, now=later)
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setattr(
        gateways,
        "get_gateway",
        lambda: StripeGateway(
            api_key="sk_test_x", webhook_secret="whsec_x", api_base=dead, max_retries=0
        ),
    )
    for callback in after_commit:
        callback()

    assert Refund.objects.get(payment=payment).state == "pending"
    (message,) = [m for m in mail.outbox if m.subject == "Your payment is being refunded"]
    assert message.to == [client_user.email]


def test_pay_11_cancel_in_time_refunds_in_full(
    localstripe: LocalStripe, client_user: User, therapist: User, stripe_wire: list
) -> None:
    """PAY-11: cancelled more than N h before → full refund."""
    booking, payment = paid_booking(localstripe, client_user, therapist)
    booking_cancel(booking_id=booking.pk, by=client_user, reason="cannot make it", now=NOW)
    fee_request = FeeRequest.objects.get(booking=booking)
    assert (fee_request.kind, fee_request.reason) == ("full_refund", "client_cancelled_in_time")

    assert fee_request_process(fee_request_id=fee_request.pk, now=NOW) is True

    payment.refresh_from_db()
    fee_request.refresh_from_db()
    assert (payment.state, payment.amount_refunded_minor) == ("refunded", 12000)
    assert Refund.objects.get(payment=payment).reason == "client_cancelled_in_time"
    assert fee_request.state == "settled"
    assert refunds_sent(stripe_wire) == [f"billing:refund:{payment.pk}:1"]


def test_pay_11_late_cancel_keeps_the_fee_and_refunds_the_rest(
    localstripe: LocalStripe, client_user: User, therapist: User
) -> None:
    """PAY-11: cancelled within N h → the policy's fee is kept from the payment, the rest
    refunded."""
    booking, payment = paid_booking(
        localstripe,
        client_user,
        therapist,
        starts_in=timedelta(hours=5),
        cancel_free_hours=24,
        late_fee_kind="percent",
        late_fee_value=50,
    )
    booking_cancel(booking_id=booking.pk, by=client_user, reason="late", now=NOW)
    fee_request = FeeRequest.objects.get(booking=booking)
    assert (fee_request.kind, fee_request.fee_minor, fee_request.refund_minor) == (
        "late_cancellation_fee",
        6000,
        6000,
    )

    fee_request_process(fee_request_id=fee_request.pk, now=NOW)

    payment.refresh_from_db()
    assert (payment.state, payment.amount_refunded_minor) == ("partially_refunded", 6000)
    assert payment.amount_captured_minor - payment.amount_refunded_minor == 6000  # the fee


def test_pay_11_the_therapist_cancelling_late_refunds_in_full(
    localstripe: LocalStripe, client_user: User, therapist: User
) -> None:
    """PAY-11: the therapist cancels, even late → full refund, no fee."""
    booking, payment = paid_booking(
        localstripe,
        client_user,
        therapist,
        starts_in=timedelta(hours=2),
        late_fee_kind="percent",
        late_fee_value=100,
    )
    booking_cancel(booking_id=booking.pk, by=therapist, reason="ill", now=NOW)
    fee_request = FeeRequest.objects.get(booking=booking)
    assert (fee_request.kind, fee_request.fee_minor) == ("full_refund", 0)

    fee_request_process(fee_request_id=fee_request.pk, now=NOW)

    payment.refresh_from_db()
    assert (payment.state, payment.amount_refunded_minor) == ("refunded", 12000)


def test_pay_11_the_therapist_not_showing_up_refunds_in_full_with_no_fee(
    localstripe: LocalStripe, client_user: User, therapist: User, stripe_wire: list
) -> None:
    """PAY-11: the therapist no-shows → the whole payment is refunded, whatever the late fee."""
    booking, payment = paid_booking(
        localstripe, client_user, therapist, late_fee_kind="percent", late_fee_value=100
    )
    booking_therapist_no_show(
        booking_id=booking.pk, by=therapist, now=booking.start + timedelta(minutes=15)
    )
    fee_request = FeeRequest.objects.get(booking=booking)

    fee_request_process(fee_request_id=fee_request.pk, now=NOW)

    payment.refresh_from_db()
    assert (payment.state, payment.amount_refunded_minor) == ("refunded", 12000)
    assert Refund.objects.get(payment=payment).reason == "therapist_no_show"
    assert not Payment.objects.exclude(purpose="session").exists()  # no fee
    assert refunds_sent(stripe_wire) == [f"billing:refund:{payment.pk}:1"]


def test_pay_11_a_client_no_show_keeps_the_fee_from_the_session_payment(
    localstripe: LocalStripe, client_user: User, therapist: User
) -> None:
    """PAY-11: the client no-shows → the late fee is kept from what they paid up front, the rest
    refunded; nothing is charged off-session."""
    booking, payment = paid_booking(
        localstripe, client_user, therapist, late_fee_kind="fixed", late_fee_value=5000
    )
    booking_mark_no_show(
        booking_id=booking.pk, by=therapist, now=booking.start + timedelta(minutes=15)
    )
    fee_request = FeeRequest.objects.get(booking=booking)

    fee_request_process(fee_request_id=fee_request.pk, now=NOW)

    payment.refresh_from_db()
    assert (payment.state, payment.amount_refunded_minor) == ("partially_refunded", 7000)
    assert Refund.objects.get(payment=payment).reason == "client_no_show"
    assert not Payment.objects.exclude(purpose="session").exists()


def test_a_held_unpaid_booking_cancelled_cancels_its_intent(
    localstripe: LocalStripe, client_user: User, therapist: User
) -> None:
    """PAY-11: a booking not yet paid, cancelled → its PaymentIntent is canceled (the hold
    released), nothing refunded."""
    held = booking_for(client=client_user, therapist=therapist, now=NOW)
    payment = start_payment(client=client_user, therapist=therapist, now=NOW, booking=held).payment
    booking_cancel(booking_id=held.pk, by=client_user, reason="changed my mind", now=NOW)
    fee_request = FeeRequest.objects.get(booking=held)

    fee_request_process(fee_request_id=fee_request.pk, now=NOW)

    payment.refresh_from_db()
    assert payment.state == "canceled"
    assert Refund.objects.count() == 0
    fee_request.refresh_from_db()
    assert fee_request.state == "settled"


def test_pay_17_a_refund_stripe_could_not_take_is_sent_later_with_the_same_key(
    localstripe: LocalStripe,
    settings: Any,
    client_user: User,
    therapist: User,
    stripe_wire: list[WireRequest],
) -> None:
    booking, payment = paid_booking(localstripe, client_user, therapist)
    booking_cancel(booking_id=booking.pk, by=client_user, reason="cannot make it", now=NOW)

    settings.STRIPE_API_BASE = f"http://127.0.0.1:{free_port()}"  # Stripe is down
    assert billing_settle(now=NOW) == {
        "fee_requests_settled": 1,
        "refunds_sent": 0,
        "cards_saved": 0,
        "payouts_sent": 0,
    }
    refund = Refund.objects.get(payment=payment)
    assert (refund.state, refund.stripe_refund_id) == ("pending", None)

    settings.STRIPE_API_BASE = localstripe.url  # back
    assert billing_settle(now=NOW) == {
        "fee_requests_settled": 0,
        "refunds_sent": 0,
        "cards_saved": 0,
        "payouts_sent": 0,
    }  # too new
    assert billing_settle(now=NOW + timedelta(minutes=2))["refunds_sent"] == 1
    refund.refresh_from_db()
    assert refund.state == "succeeded"
    key = f"billing:refund:{payment.pk}:1"
    assert refunds_sent(stripe_wire) == [key, key]  # refused while down, then sent
    assert FeeRequest.objects.get(booking=booking).state == "settled"


def test_billing_settle_command_reports_what_it_did(db: None, capsys: Any) -> None:
    call_command("billing_settle")
    assert capsys.readouterr().out.strip() == (
        '{"fee_requests_settled": 0, "refunds_sent": 0, "cards_saved": 0, "payouts_sent": 0}'
    )


NY = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("start", "cancelled_at", "refunded"),
    [
        # exactly 24 h before: still free
        (datetime(2026, 5, 5, 15, tzinfo=UTC), datetime(2026, 5, 4, 15, tzinfo=UTC), 12000),
        # one second later: the 50 % late fee is kept
        (datetime(2026, 5, 5, 15, tzinfo=UTC), datetime(2026, 5, 4, 15, 0, 1, tzinfo=UTC), 6000),
        # New York springs forward on 8 March 2026: noon to noon is 24 h on the wall clock but
        # 23 h elapsed, so it is late
        (datetime(2026, 3, 8, 12, tzinfo=NY), datetime(2026, 3, 7, 12, tzinfo=NY), 6000),
        # ... and noon to noon across the autumn change is 25 h elapsed: free
        (datetime(2026, 11, 1, 12, tzinfo=NY), datetime(2026, 10, 31, 12, tzinfo=NY), 12000),
        # a therapist in Los Angeles (09:00 on the 5th, 16:00 UTC) and a client in Tokyo
        # cancelling at 01:00 on the 5th (16:00 UTC on the 4th): exactly 24 h, still free
        (
            datetime(2026, 5, 5, 9, tzinfo=ZoneInfo("America/Los_Angeles")),
            datetime(2026, 5, 5, 1, 0, tzinfo=ZoneInfo("Asia/Tokyo")),
            12000,
        ),
        # a client cancelling from Tokyo at 01:00 on the 5th (16:00 UTC on the 4th): 23 h
        # before a session at 15:00 UTC; the instants count, not anyone's wall clock
        (
            datetime(2026, 5, 5, 15, tzinfo=UTC),
            datetime(2026, 5, 5, 1, 0, tzinfo=ZoneInfo("Asia/Tokyo")),
            6000,
        ),
    ],
)
def test_pay_11_the_free_cancellation_edges(
    monkeypatch: pytest.MonkeyPatch,
    client_user: User,
    therapist: User,
    start: datetime,
    cancelled_at: datetime,
    refunded: int,
) -> None:
    """PAY-11 edges, followed through to the refund sent: exactly N h before, a DST change
    either way, and a client in another time zone than the therapist (elapsed UTC time counts)."""
    payment = make_payment(
        client=client_user,
        therapist=therapist,
        now=NOW,
        state="succeeded",
        captured_minor=12000,
        intent_id="pi_x",
    )
    Booking.objects.filter(pk=payment.booking_id).update(
        start=start,
        end=start + timedelta(minutes=50),
        blocked_start=start,
        blocked_end=start + timedelta(minutes=50),
        cancel_free_hours=24,
        late_fee_kind="percent",
        late_fee_value=50,
    )
    booking_cancel(booking_id=payment.booking_id, by=client_user, reason="r", now=cancelled_at)
    reply = {
        "id": "re_1",
        "object": "refund",
        "amount": refunded,
        "currency": "usd",
        "payment_intent": "pi_x",
        "status": "succeeded",
    }
    with scripted_stripe([Reply(200, reply)]) as server:
        monkeypatch.setattr(
            gateways,
            "get_gateway",
            lambda: StripeGateway(
                api_key="sk_test_x", webhook_secret="whsec_x", api_base=server.url, max_retries=0
            ),
        )
        fee_request = FeeRequest.objects.get(booking_id=payment.booking_id)
        fee_request_process(fee_request_id=fee_request.pk, now=cancelled_at)
        amounts = [dict(parse_qsl(r.body))["amount"] for r in server.received]
    assert amounts == [str(refunded)]
    payment.refresh_from_db()
    assert payment.amount_captured_minor - payment.amount_refunded_minor == 12000 - refunded
