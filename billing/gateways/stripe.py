"""The Stripe gateway: the only module that imports the ``stripe`` SDK.

* ``api_base`` is configurable (``STRIPE_API_BASE``) so tests point it at a local fake.
* The SDK's own retries are off; this module retries 429, 5xx and connection errors itself, a
  bounded number of times with exponential back-off, always with the SAME idempotency key
  (Stripe replays the first result for a key it has seen, so a retry can never charge twice).
* Every creating call carries the caller's deterministic idempotency key.
* Requests carry only what a call needs: amounts, ids and opaque metadata. No description,
  statement descriptor, name or email is ever sent (Stripe signs no BAA: no PHI leaves us).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import stripe

from api.parsers import strict_json_loads
from billing.gateways.base import (
    CardDeclined,
    CustomerResult,
    EphemeralKey,
    GatewayConfigurationError,
    GatewayError,
    GatewayUnavailable,
    IdempotencyKeyReused,
    InvalidGatewayRequest,
    PaymentIntentResult,
    PaymentMethodResult,
    RefundResult,
    SetupIntentResult,
    TransferResult,
    TransferReversalResult,
    WebhookEvent,
    WebhookPayloadInvalid,
    WebhookSignatureInvalid,
)

T = TypeVar("T")


class _NoBodies(logging.Filter):
    """The SDK logs every request's and response's body at DEBUG: client secrets, ephemeral
    key secrets. None of that reaches a log, whatever ``LOG_LEVEL`` says."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


logging.getLogger("stripe").addFilter(_NoBodies())

_BACKOFF_BASE_SECONDS = 0.5
_BACKOFF_CAP_SECONDS = 8.0


def id_of(value: Any) -> str:
    """An expandable field: an id string, an expanded object, or nothing."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and value.get("id"):
        return str(value["id"])
    return ""


def payment_intent_from(obj: Mapping[str, Any]) -> PaymentIntentResult:
    error = obj.get("last_payment_error") or {}
    received = obj.get("amount_received")
    if received is None and obj.get("status") == "succeeded":
        # Older API versions (and localstripe) have no ``amount_received``: all was taken.
        received = obj["amount"]
    return PaymentIntentResult(
        id=str(obj["id"]),
        status=str(obj["status"]),
        amount=int(obj["amount"]),
        currency=str(obj["currency"]).upper(),
        client_secret=str(obj.get("client_secret") or ""),
        amount_received=int(received or 0),
        latest_charge_id=id_of(obj.get("latest_charge")),
        last_error_code=str(error.get("decline_code") or error.get("code") or ""),
        livemode=bool(obj.get("livemode", False)),
        metadata={str(k): str(v) for k, v in (obj.get("metadata") or {}).items()},
    )


def setup_intent_from(obj: Mapping[str, Any]) -> SetupIntentResult:
    error = obj.get("last_setup_error") or {}
    return SetupIntentResult(
        id=str(obj["id"]),
        status=str(obj["status"]),
        client_secret=str(obj.get("client_secret") or ""),
        customer_id=id_of(obj.get("customer")),
        payment_method_id=id_of(obj.get("payment_method")),
        last_error_code=str(error.get("decline_code") or error.get("code") or ""),
    )


def payment_method_from(obj: Mapping[str, Any]) -> PaymentMethodResult:
    card = obj.get("card") or {}
    return PaymentMethodResult(
        id=str(obj["id"]),
        type=str(obj.get("type") or ""),
        customer_id=id_of(obj.get("customer")),
        brand=str(card.get("brand") or ""),
        last4=str(card.get("last4") or ""),
        exp_month=int(card.get("exp_month") or 0),
        exp_year=int(card.get("exp_year") or 0),
    )


def refund_from(obj: Mapping[str, Any]) -> RefundResult:
    return RefundResult(
        id=str(obj["id"]),
        status=str(obj.get("status") or "pending"),
        amount=int(obj["amount"]),
        currency=str(obj["currency"]).upper(),
        payment_intent_id=id_of(obj.get("payment_intent")),
        charge_id=id_of(obj.get("charge")),
    )


class StripeGateway:
    def __init__(
        self,
        *,
        api_key: str,
        webhook_secret: str,
        api_base: str = stripe.DEFAULT_API_BASE,
        connect_timeout: float = 5,
        read_timeout: float = 20,
        max_retries: int = 2,
        webhook_tolerance: int = 300,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._api_key = api_key
        self._webhook_secret = webhook_secret
        self._max_retries = max(0, max_retries)
        self._webhook_tolerance = webhook_tolerance
        self._sleep = sleep
        self._client = (
            stripe.StripeClient(
                api_key,
                base_addresses={"api": api_base},
                max_network_retries=0,  # retried below, with back-off and the same key
                http_client=stripe.RequestsClient(timeout=(connect_timeout, read_timeout)),
            )
            if api_key
            else None
        )

    # --- calls ----------------------------------------------------------------------------

    def customer_create(
        self, *, idempotency_key: str, metadata: Mapping[str, str]
    ) -> CustomerResult:
        client = self._require_client()
        customer = self._call(
            lambda: client.v1.customers.create(
                params={"metadata": dict(metadata)},
                options={"idempotency_key": idempotency_key},
            )
        )
        return CustomerResult(id=str(customer.to_dict()["id"]))

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
    ) -> PaymentIntentResult:
        client = self._require_client()
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency.lower(),
            "customer": customer_id,
            "metadata": dict(metadata),
            "payment_method_types": ["card"],
        }
        if capture_manually:
            params["capture_method"] = "manual"
        if payment_method_id:
            params["payment_method"] = payment_method_id
            params["confirm"] = True
            if off_session:
                params["off_session"] = True
        intent = self._call(
            lambda: client.v1.payment_intents.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        )
        return payment_intent_from(intent.to_dict())

    def payment_intent_retrieve(self, payment_intent_id: str) -> PaymentIntentResult:
        client = self._require_client()
        intent = self._call(lambda: client.v1.payment_intents.retrieve(payment_intent_id))
        return payment_intent_from(intent.to_dict())

    def payment_intents_created_between(
        self, *, start: int, end: int
    ) -> Iterator[PaymentIntentResult]:
        """Every intent created in ``[start, end)`` (epoch seconds), page by page."""
        client = self._require_client()
        params: dict[str, Any] = {"created": {"gte": start, "lt": end}, "limit": 100}
        while True:
            page = self._call(
                lambda params=params: client.v1.payment_intents.list(params=params)  # type: ignore[misc]
            )
            for intent in page.data:
                yield payment_intent_from(intent.to_dict())
            if not page.has_more or not page.data:
                return
            params = {**params, "starting_after": page.data[-1].id}

    def payment_intent_cancel(
        self, *, payment_intent_id: str, idempotency_key: str
    ) -> PaymentIntentResult:
        client = self._require_client()
        intent = self._call(
            lambda: client.v1.payment_intents.cancel(
                payment_intent_id, options={"idempotency_key": idempotency_key}
            )
        )
        return payment_intent_from(intent.to_dict())

    def payment_intent_capture(
        self, *, payment_intent_id: str, amount: int, idempotency_key: str
    ) -> PaymentIntentResult:
        client = self._require_client()
        intent = self._call(
            lambda: client.v1.payment_intents.capture(
                payment_intent_id,
                params={"amount_to_capture": amount},
                options={"idempotency_key": idempotency_key},
            )
        )
        return payment_intent_from(intent.to_dict())

    def refund_create(
        self,
        *,
        idempotency_key: str,
        payment_intent_id: str,
        amount: int,
        metadata: Mapping[str, str],
    ) -> RefundResult:
        # No ``reason``: ours is kept on our own refund row; Stripe's three words add nothing.
        client = self._require_client()
        refund = self._call(
            lambda: client.v1.refunds.create(
                params={
                    "payment_intent": payment_intent_id,
                    "amount": amount,
                    "metadata": dict(metadata),
                },
                options={"idempotency_key": idempotency_key},
            )
        )
        return refund_from(refund.to_dict())

    def setup_intent_create(
        self, *, idempotency_key: str, customer_id: str, metadata: Mapping[str, str]
    ) -> SetupIntentResult:
        client = self._require_client()
        params: dict[str, Any] = {
            "customer": customer_id,
            "usage": "off_session",
            "payment_method_types": ["card"],
            "metadata": dict(metadata),
        }
        intent = self._call(
            lambda: client.v1.setup_intents.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        )
        return setup_intent_from(intent.to_dict())

    def setup_intent_retrieve(self, setup_intent_id: str) -> SetupIntentResult:
        client = self._require_client()
        intent = self._call(lambda: client.v1.setup_intents.retrieve(setup_intent_id))
        return setup_intent_from(intent.to_dict())

    def payment_method_retrieve(self, payment_method_id: str) -> PaymentMethodResult:
        client = self._require_client()
        method = self._call(lambda: client.v1.payment_methods.retrieve(payment_method_id))
        return payment_method_from(method.to_dict())

    def payment_method_detach(
        self, *, payment_method_id: str, idempotency_key: str
    ) -> PaymentMethodResult:
        client = self._require_client()
        method = self._call(
            lambda: client.v1.payment_methods.detach(
                payment_method_id, options={"idempotency_key": idempotency_key}
            )
        )
        return payment_method_from(method.to_dict())

    def ephemeral_key_create(self, *, customer_id: str, stripe_version: str) -> EphemeralKey:
        """``POST /v1/ephemeral_keys`` with the ``Stripe-Version`` the mobile SDK sends.

        No idempotency key: each call is meant to make a new short-lived key, and a retry that
        made a second one leaves a harmless unused key that expires. (localstripe has no
        ephemeral keys: tested against a scripted server.)"""
        client = self._require_client()
        key = self._call(
            lambda: client.v1.ephemeral_keys.create(
                params={"customer": customer_id}, options={"stripe_version": stripe_version}
            )
        )
        data = key.to_dict()
        associated = data.get("associated_objects") or []
        customers = [
            str(item.get("id"))
            for item in associated
            if isinstance(item, Mapping) and item.get("type") == "customer"
        ]
        if not data.get("secret"):
            raise InvalidGatewayRequest("Stripe returned an ephemeral key without its secret.")
        return EphemeralKey(
            id=str(data["id"]),
            secret=str(data["secret"]),
            customer_id=customers[0] if customers else customer_id,
            expires=int(data.get("expires") or 0),
        )

    # --- Connect (localstripe has none: tested against a scripted server) -------------------

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
    ) -> TransferResult:
        client = self._require_client()
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency.lower(),
            "destination": destination,
            "transfer_group": transfer_group,
            "source_transaction": source_transaction,
            "metadata": dict(metadata),
        }
        transfer = self._call(
            lambda: client.v1.transfers.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        )
        data = transfer.to_dict()
        return TransferResult(
            id=str(data["id"]),
            amount=int(data["amount"]),
            currency=str(data["currency"]).upper(),
            amount_reversed=int(data.get("amount_reversed") or 0),
            destination=id_of(data.get("destination")),
        )

    def transfer_reverse(
        self, *, idempotency_key: str, transfer_id: str, amount: int
    ) -> TransferReversalResult:
        client = self._require_client()
        reversal = self._call(
            lambda: client.v1.transfers.reversals.create(
                transfer_id,
                params={"amount": amount},
                options={"idempotency_key": idempotency_key},
            )
        )
        data = reversal.to_dict()
        return TransferReversalResult(
            id=str(data["id"]), amount=int(data["amount"]), transfer_id=id_of(data.get("transfer"))
        )

    # --- webhooks -------------------------------------------------------------------------

    def webhook_event_verify(self, *, payload: bytes, signature_header: str) -> WebhookEvent:
        """Stripe's own check of the signature over the raw bytes, and of its age.

        An empty secret fails closed here (never an HMAC keyed with ""), whatever the SDK does.
        """
        if not self._webhook_secret.strip():
            raise WebhookSignatureInvalid("No webhook secret is configured.", code="no_secret")
        try:
            text = payload.decode("utf-8")
            stripe.WebhookSignature.verify_header(
                text, signature_header, self._webhook_secret, tolerance=self._webhook_tolerance
            )
        except (UnicodeDecodeError, stripe.SignatureVerificationError) as exc:
            raise WebhookSignatureInvalid("Invalid webhook signature.") from exc
        return _webhook_event_from(text)

    # --- plumbing -------------------------------------------------------------------------

    def _require_client(self) -> stripe.StripeClient:
        if self._client is None:
            raise GatewayConfigurationError("STRIPE_SECRET_KEY is not configured.")
        return self._client

    def _call(self, request: Callable[[], T]) -> T:
        """Run ``request``; retry what is worth retrying, map the rest to gateway errors."""
        attempt = 0
        while True:
            try:
                return request()
            except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
                last: stripe.StripeError = exc
            except stripe.APIError as exc:
                if exc.http_status is not None and exc.http_status < 500:
                    raise _mapped(exc) from exc
                last = exc
            except stripe.StripeError as exc:
                raise _mapped(exc) from exc
            if attempt >= self._max_retries:
                raise GatewayUnavailable(
                    "Stripe could not be reached; retry later.",
                    code=type(last).__name__,
                    http_status=last.http_status,
                ) from last
            self._sleep(min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * 2**attempt))
            attempt += 1


def _mapped(exc: stripe.StripeError) -> GatewayError:
    code = str(exc.code or "")
    if isinstance(exc, stripe.CardError):
        json_body: Any = exc.json_body or {}
        error_body: Any = json_body.get("error") or {}
        intent = error_body.get("payment_intent")
        return CardDeclined(
            "The card was declined.",
            code=code or "card_declined",
            decline_code=str(error_body.get("decline_code") or ""),
            payment_intent=payment_intent_from(intent) if intent else None,
        )
    if isinstance(exc, stripe.IdempotencyError):
        return IdempotencyKeyReused(
            "An idempotency key was reused with different parameters.",
            code=code or "idempotency_key_in_use",
            http_status=exc.http_status,
        )
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return GatewayConfigurationError(
            "Stripe refused our credentials.", code=code, http_status=exc.http_status
        )
    return InvalidGatewayRequest(
        "Stripe refused the request.", code=code, http_status=exc.http_status
    )


def _webhook_event_from(text: str) -> WebhookEvent:
    try:
        body = strict_json_loads(text)  # as deep as any request body may be, no deeper
        obj: Any = body["data"]["object"]
        event = WebhookEvent(
            id=body["id"],
            type=body["type"],
            livemode=body["livemode"],
            created=body["created"],
            object=obj,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise WebhookPayloadInvalid("The event body is malformed.") from exc
    if not (
        isinstance(event.id, str)
        and event.id.startswith("evt_")
        and isinstance(event.type, str)
        and isinstance(event.livemode, bool)
        and isinstance(event.created, int)
        and isinstance(obj, dict)
        and isinstance(obj.get("id"), str)
    ):
        raise WebhookPayloadInvalid("The event body is malformed.")
    kind = event.type.partition(".")[0]
    return dataclasses.replace(
        event,
        payment_intent=_read(payment_intent_from, obj) if kind == "payment_intent" else None,
        setup_intent=_read(setup_intent_from, obj) if kind == "setup_intent" else None,
        payment_intent_id=id_of(obj.get("payment_intent")),
    )


def _read(parse: Callable[[Mapping[str, Any]], T], obj: Mapping[str, Any]) -> T | None:
    """``parse(obj)``, or None when the object lacks what it needs (the domain refuses it)."""
    try:
        return parse(obj)
    except (KeyError, TypeError, ValueError):
        return None
