"""Stripe Connect payouts to therapists (PAY-14, PAY-15), with ``BILLING_CONNECT_ENABLED`` on.

localstripe has no Connect: Stripe is a scripted loopback server answering with transfers and
reversals in Stripe's current shapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest

from api.errors import ConflictError
from api.models import User
from audit.models import AuditEvent
from billing import gateways
from billing.gateways.stripe import StripeGateway
from billing.models import Payment, ProviderBilling, Transfer
from billing.services.lifecycle import billing_settle
from billing.services.payouts import payout_create, platform_fee
from billing.services.refunds import refund_create
from billing.tasks import reverse_payout
from scheduling.models import Booking
from tests.billing.conftest import make_payment, post_webhook
from tests.billing.stripe_doubles import (
    Reply,
    ScriptedStripe,
    charge_object,
    dispute_object,
    event,
    scripted_stripe,
    signed,
)
from tests.clock import clock_instant

NOW = clock_instant()  # the instant the views run at (tests/clock.py)


def transfer_reply(amount: int = 10200, reversed_: int = 0) -> Reply:
    return Reply(
        200,
        {
            "id": "tr_1",
            "object": "transfer",
            "amount": amount,
            "amount_reversed": reversed_,
            "currency": "usd",
            "destination": "acct_1",
            "reversed": False,
            "source_transaction": "ch_1",
            "transfer_group": "g",
        },
    )


def reversal_reply(amount: int) -> Reply:
    return Reply(
        200,
        {"id": "trr_1", "object": "transfer_reversal", "amount": amount, "transfer": "tr_1"},
    )


def refund_reply(amount: int) -> Reply:
    return Reply(
        200,
        {
            "id": "re_1",
            "object": "refund",
            "amount": amount,
            "currency": "usd",
            "payment_intent": "pi_x",
            "status": "succeeded",
        },
    )


@pytest.fixture
def connect(settings: Any, webhook_secret: str) -> None:
    settings.BILLING_CONNECT_ENABLED = True
    settings.BILLING_PLATFORM_FEE_BPS = 1500


@pytest.fixture
def stripe_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedStripe]:
    with scripted_stripe([Reply(500, {})]) as server:
        monkeypatch.setattr(
            gateways,
            "get_gateway",
            lambda: StripeGateway(
                api_key="sk_test_x",
                webhook_secret="whsec_test_billing_suite",
                api_base=server.url,
                max_retries=0,
            ),
        )
        yield server


@pytest.fixture
def completed(client_user: User, therapist: User) -> Payment:
    payment = make_payment(
        client=client_user,
        therapist=therapist,
        now=NOW,
        state="succeeded",
        captured_minor=12000,
        intent_id="pi_x",
    )
    Payment.objects.filter(pk=payment.pk).update(stripe_charge_id="ch_1")
    Booking.objects.filter(pk=payment.booking_id).update(status="completed")
    ProviderBilling.objects.create(
        user=therapist, stripe_account_id="acct_1", payouts_enabled=True, updated_at=NOW
    )
    payment.refresh_from_db()
    return payment


def sent(server: ScriptedStripe, path: str) -> list[tuple[str | None, dict[str, str]]]:
    return [(r.idempotency_key, dict(parse_qsl(r.body))) for r in server.received if r.path == path]


@pytest.mark.parametrize("amount", [1, 7, 99, 100, 9999, 12000, 12345, 99_999_999])
@pytest.mark.parametrize("bps", [0, 1, 1500, 2999, 10_000])
def test_pay_14_the_fee_and_the_transfer_add_up_exactly(amount: int, bps: int) -> None:
    fee = platform_fee(amount, bps=bps)
    assert isinstance(fee, int)
    assert 0 <= fee <= amount
    assert fee + (amount - fee) == amount
    assert fee == (amount * bps) // 10_000


@pytest.mark.usefixtures("connect")
def test_pay_14_no_transfer_before_the_session_is_completed(
    completed: Payment, stripe_server: ScriptedStripe
) -> None:
    Booking.objects.filter(pk=completed.booking_id).update(status="confirmed")
    with pytest.raises(ConflictError) as refused:
        payout_create(payment_id=completed.pk, now=NOW)
    assert refused.value.code == "session_not_completed"
    assert Transfer.objects.count() == 0
    assert stripe_server.received == []


@pytest.mark.usefixtures("connect")
def test_pay_14_a_completed_session_is_paid_out_once_with_its_charge_and_group(
    completed: Payment, stripe_server: ScriptedStripe
) -> None:
    stripe_server.replies = [transfer_reply()]
    transfer = payout_create(payment_id=completed.pk, now=NOW)
    again = payout_create(payment_id=completed.pk, now=NOW)
    assert transfer is not None and again is not None and again.pk == transfer.pk
    assert (transfer.amount_minor, transfer.fee_minor, transfer.state) == (10200, 1800, "sent")
    (request,) = sent(stripe_server, "/v1/transfers")
    assert request == (
        f"billing:transfer:{completed.pk}",
        {
            "amount": "10200",
            "currency": "usd",
            "destination": "acct_1",
            "transfer_group": f"payment_{completed.pk}",
            "source_transaction": "ch_1",
            "metadata[payment_ref]": str(completed.pk),
        },
    )


def test_pay_14_connect_off_pays_nothing_out(
    completed: Payment, stripe_server: ScriptedStripe
) -> None:
    assert payout_create(payment_id=completed.pk, now=NOW) is None
    assert stripe_server.received == []


@pytest.mark.usefixtures("connect")
def test_pay_14_an_account_without_payouts_holds_the_transfer_and_alerts(
    completed: Payment, stripe_server: ScriptedStripe, therapist: User
) -> None:
    ProviderBilling.objects.filter(user=therapist).update(payouts_enabled=False)
    assert billing_settle(now=NOW)["payouts_sent"] == 0
    transfer = Transfer.objects.get(payment=completed)
    assert transfer.state == "held"
    assert stripe_server.received == []
    assert AuditEvent.objects.filter(action="billing.payout.held", outcome="error").count() == 1

    enabled = event(
        "account.updated",
        {"id": "acct_1", "object": "account", "payouts_enabled": True, "charges_enabled": True},
        event_id="evt_acct",
    )
    assert post_webhook(*signed(enabled)).status_code == 200
    stripe_server.replies = [transfer_reply()]
    assert billing_settle(now=NOW)["payouts_sent"] == 1
    transfer.refresh_from_db()
    assert (transfer.state, transfer.stripe_transfer_id) == ("sent", "tr_1")
    assert AuditEvent.objects.filter(action="billing.payout.held").count() == 1  # alerted once


@pytest.mark.usefixtures("connect")
def test_pay_14_a_refund_after_the_payout_reverses_the_transfer(
    completed: Payment, stripe_server: ScriptedStripe
) -> None:
    """PAY-14: a refund we make after the payout reverses the transfer by the refunded amount."""
    stripe_server.replies = [transfer_reply()]
    transfer = payout_create(payment_id=completed.pk, now=NOW)
    assert transfer is not None
    stripe_server.replies = [refund_reply(5000), reversal_reply(5000)]
    refund_create(payment_id=completed.pk, amount_minor=5000, reason="goodwill", now=NOW)
    transfer.refresh_from_db()
    assert (transfer.amount_reversed_minor, transfer.state) == (5000, "sent")
    reversal = sent(stripe_server, "/v1/transfers/tr_1/reversals")
    assert reversal == [(f"billing:transfer_reversal:{transfer.pk}:1", {"amount": "5000"})]


@pytest.mark.usefixtures("connect")
def test_pay_14_a_dashboard_refund_after_the_payout_reverses_the_transfer(
    completed: Payment, stripe_server: ScriptedStripe, django_capture_on_commit_callbacks: Any
) -> None:
    """PAY-14: a refund we did not make (issued in the Stripe Dashboard) reaches us only as
    ``charge.refunded``; what it refunded beyond what we know is taken back from the sent
    transfer after the webhook commits, up to what is left of the transfer."""
    stripe_server.replies = [transfer_reply()]
    transfer = payout_create(payment_id=completed.pk, now=NOW)
    assert transfer is not None
    stripe_server.replies = [reversal_reply(6000)]
    first = event(
        "charge.refunded",
        charge_object(charge_id="ch_1", intent_id="pi_x", amount_refunded=6000),
        event_id="evt_dashboard_refund_1",
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert post_webhook(*signed(first)).status_code == 200
    transfer.refresh_from_db()
    assert (transfer.amount_reversed_minor, transfer.state) == (6000, "sent")

    stripe_server.replies = [reversal_reply(4200)]
    rest = event(
        "charge.refunded",
        charge_object(charge_id="ch_1", intent_id="pi_x", amount_refunded=12000),
        event_id="evt_dashboard_refund_2",
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert post_webhook(*signed(rest)).status_code == 200
        assert post_webhook(*signed(rest)).status_code == 200  # a duplicate changes nothing

    transfer.refresh_from_db()
    assert (transfer.amount_reversed_minor, transfer.state) == (10200, "reversed")
    assert sent(stripe_server, "/v1/transfers/tr_1/reversals") == [
        (f"billing:transfer_reversal:{transfer.pk}:1", {"amount": "6000"}),
        (f"billing:transfer_reversal:{transfer.pk}:2", {"amount": "4200"}),
    ]
    external = AuditEvent.objects.filter(action="billing.refund.external").order_by("id")
    assert [e.details["amount_minor"] for e in external] == [6000, 6000]


@pytest.mark.usefixtures("connect")
def test_pay_14_our_own_refund_s_webhook_does_not_reverse_twice(
    completed: Payment, stripe_server: ScriptedStripe, django_capture_on_commit_callbacks: Any
) -> None:
    """PAY-14: ``charge.refunded`` for a refund we made (and already reversed for) reverses
    nothing more."""
    stripe_server.replies = [transfer_reply()]
    transfer = payout_create(payment_id=completed.pk, now=NOW)
    assert transfer is not None
    stripe_server.replies = [refund_reply(5000), reversal_reply(5000)]
    refund_create(payment_id=completed.pk, amount_minor=5000, reason="goodwill", now=NOW)
    ours = event(
        "charge.refunded",
        charge_object(charge_id="ch_1", intent_id="pi_x", amount_refunded=5000),
        event_id="evt_our_refund",
    )
    with django_capture_on_commit_callbacks(execute=True) as queued:
        assert post_webhook(*signed(ours)).status_code == 200
    assert queued == []
    transfer.refresh_from_db()
    assert transfer.amount_reversed_minor == 5000
    assert len(sent(stripe_server, "/v1/transfers/tr_1/reversals")) == 1
    assert not AuditEvent.objects.filter(action="billing.refund.external").exists()


@pytest.mark.usefixtures("connect")
def test_pay_15_a_dispute_reverses_what_is_left_and_is_flagged(
    completed: Payment, stripe_server: ScriptedStripe, django_capture_on_commit_callbacks: Any
) -> None:
    stripe_server.replies = [transfer_reply()]
    transfer = payout_create(payment_id=completed.pk, now=NOW)
    assert transfer is not None
    stripe_server.replies = [reversal_reply(10200)]
    dispute = event(
        "charge.dispute.created",
        dispute_object(dispute_id="dp_1", charge_id="ch_1", intent_id="pi_x"),
        event_id="evt_dispute_payout",
    )
    with django_capture_on_commit_callbacks(execute=True) as queued:
        assert post_webhook(*signed(dispute)).status_code == 200
        # PAY-18: the webhook answered without calling Stripe; the reversal is queued
        assert sent(stripe_server, "/v1/transfers/tr_1/reversals") == []
    assert len(queued) == 1
    transfer.refresh_from_db()
    completed.refresh_from_db()
    assert (transfer.amount_reversed_minor, transfer.state) == (10200, "reversed")
    assert completed.disputed_at is not None
    assert AuditEvent.objects.filter(action="billing.payment.disputed").count() == 1
    assert AuditEvent.objects.filter(action="billing.payout.reversed").count() == 1
    # The reversal's task run again (a retry, a late duplicate): nothing is due, nothing sent.
    reverse_payout.apply(kwargs={"payment_id": str(completed.pk), "why": "dispute"}, throw=True)
    assert len(sent(stripe_server, "/v1/transfers/tr_1/reversals")) == 1
    assert AuditEvent.objects.filter(action="billing.payout.reversed").count() == 1


@pytest.mark.usefixtures("connect")
def test_pay_15_a_dispute_after_a_dashboard_refund_reverses_only_the_rest(
    completed: Payment, stripe_server: ScriptedStripe, django_capture_on_commit_callbacks: Any
) -> None:
    """Both events committed before either reversal ran (a worker busy, or down): each task
    reverses what is due when it runs, so the two add up to the transfer, never more."""
    stripe_server.replies = [transfer_reply()]
    transfer = payout_create(payment_id=completed.pk, now=NOW)
    assert transfer is not None
    refunded = event(
        "charge.refunded",
        charge_object(charge_id="ch_1", intent_id="pi_x", amount_refunded=3000),
        event_id="evt_refund_then_dispute",
    )
    dispute = event(
        "charge.dispute.created",
        dispute_object(dispute_id="dp_3", charge_id="ch_1", intent_id="pi_x"),
        event_id="evt_dispute_after_refund",
    )
    with django_capture_on_commit_callbacks() as queued:
        assert post_webhook(*signed(refunded)).status_code == 200
        assert post_webhook(*signed(dispute)).status_code == 200
    assert len(queued) == 2
    stripe_server.replies = [reversal_reply(transfer.amount_minor)]
    for callback in queued:
        callback()
    transfer.refresh_from_db()
    assert (transfer.amount_reversed_minor, transfer.state) == (transfer.amount_minor, "reversed")
    assert sent(stripe_server, "/v1/transfers/tr_1/reversals") == [
        (f"billing:transfer_reversal:{transfer.pk}:1", {"amount": str(transfer.amount_minor)})
    ]


@pytest.mark.usefixtures("connect")
def test_pay_15_a_reversal_stripe_refuses_is_flagged_and_the_dispute_still_recorded(
    completed: Payment, stripe_server: ScriptedStripe, django_capture_on_commit_callbacks: Any
) -> None:
    stripe_server.replies = [transfer_reply()]
    payout_create(payment_id=completed.pk, now=NOW)
    stripe_server.replies = [Reply(503, {})]
    dispute = event(
        "charge.dispute.created",
        dispute_object(dispute_id="dp_2", charge_id="ch_1", intent_id="pi_x"),
        event_id="evt_dispute_fail",
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert post_webhook(*signed(dispute)).status_code == 200
    completed.refresh_from_db()
    assert completed.disputed_at is not None
    assert Transfer.objects.get(payment=completed).amount_reversed_minor == 0
    assert AuditEvent.objects.filter(action="billing.payout.reversal_failed").count() == 1


@pytest.mark.usefixtures("connect")
def test_a_refunded_charge_event_does_not_pay_out_twice(
    completed: Payment, stripe_server: ScriptedStripe
) -> None:
    """charge.refunded moves the totals; a held or due payout is computed from the net."""
    refunded = event(
        "charge.refunded",
        charge_object(charge_id="ch_1", intent_id="pi_x", amount_refunded=2000),
        event_id="evt_partial_refund",
    )
    assert post_webhook(*signed(refunded)).status_code == 200
    stripe_server.replies = [transfer_reply(amount=8500)]
    transfer = payout_create(payment_id=completed.pk, now=NOW)
    assert transfer is not None
    assert (transfer.amount_minor, transfer.fee_minor) == (8500, 1500)  # 10000 net, 15 %
