"""The Stripe gateway against a scripted loopback server: retries, back-off, keys, error mapping."""

from __future__ import annotations

import pytest

from billing.gateways.base import (
    CardDeclined,
    GatewayConfigurationError,
    GatewayUnavailable,
    IdempotencyKeyReused,
    InvalidGatewayRequest,
)
from billing.gateways.stripe import StripeGateway
from tests.billing.stripe_doubles import (
    Reply,
    free_port,
    payment_intent_object,
    scripted_stripe,
    stripe_error,
)

KEY = "billing:payment_intent:booking-1:session:1"
INTENT = payment_intent_object(intent_id="pi_123", status="requires_payment_method")


def gateway(api_base: str, sleeps: list[float], **kwargs: object) -> StripeGateway:
    options: dict = {
        "api_key": "sk_test_scripted",
        "webhook_secret": "whsec_x",
        "api_base": api_base,
        "connect_timeout": 1,
        "read_timeout": 0.3,
        "max_retries": 2,
        "sleep": sleeps.append,
    }
    options.update(kwargs)
    return StripeGateway(**options)


def create_intent(gw: StripeGateway) -> object:
    return gw.payment_intent_create(
        idempotency_key=KEY,
        amount=12000,
        currency="USD",
        customer_id="cus_1",
        metadata={"payment_ref": "6f1c1d7e-8a43-4a8e-9d0b-2f5b2b0c9a11"},
    )


def test_pay_17_5xx_is_retried_with_back_off_and_the_same_key() -> None:
    sleeps: list[float] = []
    replies = [Reply(503, stripe_error("api_error", "")), Reply(500, {}), Reply(200, INTENT)]
    with scripted_stripe(replies) as stripe_server:
        result = create_intent(gateway(stripe_server.url, sleeps))
    assert result.id == "pi_123"
    assert result.currency == "USD"
    assert [r.idempotency_key for r in stripe_server.received] == [KEY, KEY, KEY]
    assert sleeps == [0.5, 1.0]


def test_pay_17_rate_limit_is_retried_with_the_same_key() -> None:
    sleeps: list[float] = []
    replies = [Reply(429, stripe_error("rate_limit_error", "rate_limit")), Reply(200, INTENT)]
    with scripted_stripe(replies) as stripe_server:
        create_intent(gateway(stripe_server.url, sleeps))
    assert [r.idempotency_key for r in stripe_server.received] == [KEY, KEY]
    assert sleeps == [0.5]


def test_pay_17_retries_are_bounded_then_a_retryable_error() -> None:
    sleeps: list[float] = []
    with scripted_stripe([Reply(503, stripe_error("api_error", ""))]) as stripe_server:
        with pytest.raises(GatewayUnavailable):
            create_intent(gateway(stripe_server.url, sleeps))
    assert len(stripe_server.received) == 3
    assert sleeps == [0.5, 1.0]


def test_pay_17_connection_refused_is_retried_then_unavailable() -> None:
    sleeps: list[float] = []
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(GatewayUnavailable):
        create_intent(gateway(closed, sleeps))
    assert sleeps == [0.5, 1.0]


def test_pay_03_a_timeout_is_retried_with_the_same_key() -> None:
    """PAY-03: Stripe never answers within the read timeout: every try carries the same key, so
    whichever of them Stripe did process, the intent exists once."""
    sleeps: list[float] = []
    with scripted_stripe([Reply(hang=True)]) as stripe_server:
        with pytest.raises(GatewayUnavailable):
            create_intent(gateway(stripe_server.url, sleeps))
        keys = [r.idempotency_key for r in stripe_server.received]
    assert keys == [KEY, KEY, KEY]


def test_pay_03_a_key_reused_with_other_parameters_is_surfaced_not_retried() -> None:
    sleeps: list[float] = []
    body = stripe_error("idempotency_error", "idempotency_key_in_use", "Keys for idempotent...")
    with scripted_stripe([Reply(400, body)]) as stripe_server:
        with pytest.raises(IdempotencyKeyReused):
            create_intent(gateway(stripe_server.url, sleeps))
    assert len(stripe_server.received) == 1
    assert sleeps == []


def test_a_refused_request_is_not_retried() -> None:
    sleeps: list[float] = []
    body = stripe_error("invalid_request_error", "parameter_unknown")
    with scripted_stripe([Reply(400, body)]) as stripe_server:
        with pytest.raises(InvalidGatewayRequest) as refused:
            create_intent(gateway(stripe_server.url, sleeps))
    assert refused.value.code == "parameter_unknown"
    assert len(stripe_server.received) == 1


def test_pay_05_a_decline_carries_the_intent_as_it_now_is() -> None:
    sleeps: list[float] = []
    declined = payment_intent_object(intent_id="pi_9", status="requires_payment_method")
    body = {
        "error": {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "generic_decline",
            "message": "Your card was declined.",
            "payment_intent": declined,
        }
    }
    with scripted_stripe([Reply(402, body)]) as stripe_server:
        with pytest.raises(CardDeclined) as error:
            create_intent(gateway(stripe_server.url, sleeps))
    assert error.value.decline_code == "generic_decline"
    assert error.value.payment_intent is not None
    assert error.value.payment_intent.id == "pi_9"
    assert sleeps == []


def test_no_api_key_refuses_to_call_stripe() -> None:
    with pytest.raises(GatewayConfigurationError):
        create_intent(gateway("http://127.0.0.1:9", [], api_key=""))


def test_a_refused_key_is_a_configuration_error() -> None:
    body = stripe_error("invalid_request_error", "", "Invalid API Key provided")
    with scripted_stripe([Reply(401, body)]) as stripe_server:
        with pytest.raises(GatewayConfigurationError):
            create_intent(gateway(stripe_server.url, []))
