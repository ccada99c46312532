"""The payment gateway as billing's domain sees it: plain dataclasses and a few errors.

Nothing outside ``billing/gateways/`` imports a vendor SDK. Every creating call takes an
``idempotency_key`` that the caller derives deterministically from its own rows, so a retry (ours,
or a user's double click) can never create a second object at the provider.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class CustomerResult:
    id: str


@dataclass(frozen=True)
class PaymentIntentResult:
    id: str
    status: str  # the provider's status word, e.g. "requires_payment_method", "succeeded"
    amount: int
    currency: str  # upper-case ISO 4217
    client_secret: str
    amount_received: int = 0
    latest_charge_id: str = ""
    last_error_code: str = ""
    livemode: bool = False
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RefundResult:
    id: str
    status: str  # "pending", "succeeded", "failed", "canceled", "requires_action"
    amount: int
    currency: str
    payment_intent_id: str = ""
    charge_id: str = ""


@dataclass(frozen=True)
class SetupIntentResult:
    id: str
    status: str
    client_secret: str
    customer_id: str = ""
    payment_method_id: str = ""
    last_error_code: str = ""


@dataclass(frozen=True)
class PaymentMethodResult:
    """A saved payment method as far as we keep it: no name, address or full number."""

    id: str
    type: str
    customer_id: str = ""
    brand: str = ""
    last4: str = ""
    exp_month: int = 0
    exp_year: int = 0


@dataclass(frozen=True)
class EphemeralKey:
    """A short-lived key scoped to one customer, for Stripe's mobile SDK (PaymentSheet) to list
    and save that customer's cards. ``secret`` is a credential: never logged (kept out of
    ``repr``)."""

    id: str
    secret: str = field(repr=False)
    customer_id: str
    expires: int  # epoch seconds


@dataclass(frozen=True)
class TransferResult:
    id: str
    amount: int
    currency: str
    amount_reversed: int = 0
    destination: str = ""


@dataclass(frozen=True)
class TransferReversalResult:
    id: str
    amount: int
    transfer_id: str


@dataclass(frozen=True)
class WebhookEvent:
    """A verified webhook event. ``object`` is ``data.object`` exactly as sent; the gateway
    also reads it into typed results, so the domain never parses the vendor's objects:
    ``payment_intent`` for a ``payment_intent.*`` event and ``setup_intent`` for a
    ``setup_intent.*`` one (None for other events, or when the object is malformed), and
    ``payment_intent_id``, the intent a charge, dispute or refund belongs to ("" if none)."""

    id: str
    type: str
    livemode: bool
    created: int  # epoch seconds
    object: Mapping[str, Any]
    payment_intent: PaymentIntentResult | None = None
    setup_intent: SetupIntentResult | None = None
    payment_intent_id: str = ""


class GatewayError(Exception):
    """Base of every gateway error. Messages never carry request bodies or keys."""

    def __init__(self, message: str, *, code: str = "", http_status: int | None = None):
        super().__init__(message)
        self.code = code
        self.http_status = http_status


class GatewayUnavailable(GatewayError):
    """Connection refused, timed out, 429 or 5xx after the bounded retries: safe to retry later
    with the same idempotency key."""


class GatewayConfigurationError(GatewayError):
    """No API key, or the provider refused our credentials."""


class CardDeclined(GatewayError):
    """The provider declined the payment method; ``payment_intent`` is the intent as it now is."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        decline_code: str = "",
        payment_intent: PaymentIntentResult | None = None,
    ):
        super().__init__(message, code=code, http_status=402)
        self.decline_code = decline_code
        self.payment_intent = payment_intent


class IdempotencyKeyReused(GatewayError):
    """The same idempotency key was sent earlier with different parameters."""


class InvalidGatewayRequest(GatewayError):
    """The provider refused the request itself (4xx other than the above)."""


class WebhookSignatureInvalid(GatewayError):
    """Missing, malformed, wrong or stale signature, or no endpoint secret configured."""


class WebhookPayloadInvalid(GatewayError):
    """A correctly signed body that is not an event we can read."""


class PaymentGateway(Protocol):
    def customer_create(
        self, *, idempotency_key: str, metadata: Mapping[str, str]
    ) -> CustomerResult: ...

    def payment_intent_create(
        self,
        *,
        idempotency_key: str,
        amount: int,
        currency: str,
        customer_id: str,
        metadata: Mapping[str, str],
        capture_manually: bool = False,
        payment_method_id: str | None = None,
        off_session: bool = False,
    ) -> PaymentIntentResult: ...

    def payment_intent_retrieve(self, payment_intent_id: str) -> PaymentIntentResult: ...

    def payment_intents_created_between(
        self, *, start: int, end: int
    ) -> Iterator[PaymentIntentResult]: ...

    def payment_intent_cancel(
        self, *, payment_intent_id: str, idempotency_key: str
    ) -> PaymentIntentResult: ...

    def payment_intent_capture(
        self, *, payment_intent_id: str, amount: int, idempotency_key: str
    ) -> PaymentIntentResult: ...

    def refund_create(
        self,
        *,
        idempotency_key: str,
        payment_intent_id: str,
        amount: int,
        metadata: Mapping[str, str],
    ) -> RefundResult: ...

    def setup_intent_create(
        self, *, idempotency_key: str, customer_id: str, metadata: Mapping[str, str]
    ) -> SetupIntentResult: ...

    def setup_intent_retrieve(self, setup_intent_id: str) -> SetupIntentResult: ...

    def payment_method_retrieve(self, payment_method_id: str) -> PaymentMethodResult: ...

    def ephemeral_key_create(self, *, customer_id: str, stripe_version: str) -> EphemeralKey:
        """A new key for ``customer_id``, made with the API version the mobile SDK speaks
        (``stripe_version``: Stripe answers in that version's shape, which the SDK reads)."""
        ...

    def payment_method_detach(
        self, *, payment_method_id: str, idempotency_key: str
    ) -> PaymentMethodResult: ...

    def transfer_create(
        self,
        *,
        idempotency_key: str,
        amount: int,
        currency: str,
        destination: str,
        transfer_group: str,
        source_transaction: str,
        metadata: Mapping[str, str],
    ) -> TransferResult: ...

    def transfer_reverse(
        self, *, idempotency_key: str, transfer_id: str, amount: int
    ) -> TransferReversalResult: ...

    def webhook_event_verify(self, *, payload: bytes, signature_header: str) -> WebhookEvent: ...
