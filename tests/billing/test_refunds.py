"""Refunds never exceed what was captured, even when requested at the same time (PAY-12)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from api.errors import ConflictError, UnprocessableError
from api.models import User
from billing.errors import PaymentPendingError
from billing.models import Payment, Refund
from billing.services.lifecycle import payment_refresh
from billing.services.refunds import refund_create
from tests.billing.conftest import WireRequest, client_sdk, make_payment, start_payment, use_gateway
from tests.billing.stripe_doubles import LocalStripe, Reply, scripted_stripe
from tests.concurrency import run_at_once
from tests.live import free_port

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def refund_reply(amount: int, n: int = 1) -> Reply:
    return Reply(
        200,
        {
            "id": f"re_{n}",
            "object": "refund",
            "amount": amount,
            "currency": "usd",
            "payment_intent": "pi_x",
            "charge": "ch_x",
            "status": "succeeded",
        },
    )


@pytest.fixture
def collected(client_user: User, therapist: User) -> Payment:
    return make_payment(
        client=client_user,
        therapist=therapist,
        now=NOW,
        state="succeeded",
        intent_id="pi_x",
        captured_minor=12000,
    )


@pytest.mark.integration
def test_pay_12_partial_refunds_through_localstripe_stop_at_the_captured_amount(
    localstripe: LocalStripe, client_user: User, therapist: User, stripe_wire: list[WireRequest]
) -> None:
    payment = start_payment(client=client_user, therapist=therapist, now=NOW).payment
    sdk = client_sdk(localstripe)
    intent_id = str(payment.stripe_payment_intent_id)
    sdk.v1.payment_intents.update(intent_id, params={"payment_method": "pm_card_visa"})
    sdk.v1.payment_intents.confirm(intent_id)
    payment = payment_refresh(payment_id=payment.pk, now=NOW)
    assert (payment.state, payment.amount_captured_minor) == ("succeeded", 12000)

    first = refund_create(payment_id=payment.pk, amount_minor=5000, reason="goodwill", now=NOW)
    second = refund_create(payment_id=payment.pk, amount_minor=7000, reason="goodwill", now=NOW)
    assert (first.state, second.state) == ("succeeded", "succeeded")
    assert first.stripe_refund_id.startswith("re_")
    with pytest.raises(UnprocessableError) as refused:
        refund_create(payment_id=payment.pk, amount_minor=1, reason="goodwill", now=NOW)
    assert refused.value.code == "refund_exceeds_captured"

    payment.refresh_from_db()
    assert (payment.state, payment.amount_refunded_minor) == ("refunded", 12000)
    assert list(payment.history.order_by("id").values_list("to_state", flat=True)) == [
        "requires_payment_method",
        "succeeded",
        "partially_refunded",
        "refunded",
    ]
    refund_keys = [r.idempotency_key for r in stripe_wire if r.url.endswith("/v1/refunds")]
    assert refund_keys == [f"billing:refund:{payment.pk}:1", f"billing:refund:{payment.pk}:2"]
    assert Refund.objects.count() == 2


def test_pay_12_a_refund_larger_than_the_charge_is_refused_locally(
    collected: Payment, stripe_wire: list
) -> None:
    with pytest.raises(UnprocessableError) as refused:
        refund_create(payment_id=collected.pk, amount_minor=12001, reason="goodwill", now=NOW)
    assert refused.value.extra == {"refundable_minor": 12000}
    assert Refund.objects.count() == 0
    assert stripe_wire == []


@pytest.mark.parametrize("amount", [0, -1, 1.5, True])
def test_refund_amounts_must_be_positive_integers(collected: Payment, amount: Any) -> None:
    with pytest.raises(UnprocessableError):
        refund_create(payment_id=collected.pk, amount_minor=amount, reason="goodwill", now=NOW)
    assert Refund.objects.count() == 0


def test_an_unpaid_payment_cannot_be_refunded(
    client_user: User, therapist: User, stripe_wire: list
) -> None:
    unpaid = make_payment(client=client_user, therapist=therapist, now=NOW)
    with pytest.raises(ConflictError):
        refund_create(payment_id=unpaid.pk, amount_minor=100, reason="goodwill", now=NOW)
    assert stripe_wire == []


def test_pay_17_stripe_down_during_a_refund_leaves_nothing_and_the_retry_reuses_the_key(
    monkeypatch: pytest.MonkeyPatch, collected: Payment
) -> None:
    use_gateway(monkeypatch, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(PaymentPendingError):
        refund_create(payment_id=collected.pk, amount_minor=5000, reason="goodwill", now=NOW)
    assert Refund.objects.count() == 0
    collected.refresh_from_db()
    assert collected.amount_refunded_minor == 0

    with scripted_stripe([refund_reply(5000)]) as server:
        use_gateway(monkeypatch, server.url)
        refund = refund_create(
            payment_id=collected.pk, amount_minor=5000, reason="goodwill", now=NOW
        )
        keys = [r.idempotency_key for r in server.received]
    assert keys == [f"billing:refund:{collected.pk}:1"]
    assert refund.sequence == 1


@pytest.mark.postgres
def test_pay_12_concurrent_refunds_never_exceed_the_captured_amount(
    monkeypatch: pytest.MonkeyPatch, transactional_db: None, client_user: User, therapist: User
) -> None:
    """Five simultaneous 5000 refunds of a 12000 payment, each on its own connection: the row
    lock lets exactly two through."""
    payment = make_payment(
        client=client_user,
        therapist=therapist,
        now=NOW,
        state="succeeded",
        intent_id="pi_x",
        captured_minor=12000,
    )
    with scripted_stripe([refund_reply(5000, n) for n in range(1, 6)]) as server:
        use_gateway(monkeypatch, server.url)

        def refund(_: int) -> str:
            refund_create(payment_id=payment.pk, amount_minor=5000, reason="goodwill", now=NOW)
            return "refunded"

        results = run_at_once(refund, 5, timeout=60)
        sent = len(server.received)
    outcomes = [r.code if isinstance(r, UnprocessableError) else r for r in results]
    assert sorted(outcomes) == ["refund_exceeds_captured"] * 3 + ["refunded"] * 2
    assert sent == 2
    payment.refresh_from_db()
    assert (payment.amount_refunded_minor, payment.state) == (10000, "partially_refunded")
    assert sorted(Refund.objects.values_list("sequence", flat=True)) == [1, 2]
