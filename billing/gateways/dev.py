"""The development gateway: Stripe's test mode played locally, for ``make run`` without a Stripe
account (``DJANGO_DEBUG=1`` and no ``STRIPE_SECRET_KEY``; ``BILLING_GATEWAY`` in settings).

Modelled on Saleor's dummy gateway (``saleor/payment/gateways/dummy``): the same interface as the
real one (``base.PaymentGateway``), results decided by the test card, no network. It behaves as
Stripe's test mode does, so the domain cannot tell it apart:

* customers, PaymentIntents with client secrets, SetupIntents and saved cards, refunds,
  off-session charges, ephemeral keys and Connect transfers, created once per idempotency key
  (the same key with other parameters is ``IdempotencyKeyReused``);
* Stripe's test cards (``TEST_CARDS``): ``4242 4242 4242 4242`` succeeds, ``4000 0000 0000 0002``
  is declined, ``4000 0025 0000 3155`` asks for 3-D Secure on a one-time payment (but not once
  saved with a SetupIntent), ``4000 0027 6000 3184`` always does (an off-session charge gets
  ``authentication_required``), ``4000 0000 0000 0341`` saves but every charge is declined;
* what Stripe.js or the mobile SDK does with a client secret (``payment_intent_confirm``,
  ``setup_intent_confirm``, ``three_d_secure_complete``): ``manage.py dev_pay`` calls them;
* every change leaves an event (``DevGatewayEvent``), delivered after the causing transaction
  commits (by the ``deliver_dev_events`` task, on a Celery worker), signed with
  ``STRIPE_WEBHOOK_SECRET`` in Stripe's scheme, through the REAL webhook path
  (``billing.services.dev_events.dev_events_deliver`` → ``webhooks.webhook_receive``, which
  verifies the signature and applies each event exactly once). An event that could not be
  delivered stays pending for the next delivery, ``billing_settle``, ``manage.py
  dev_gateway_deliver`` or ``dev_pay``.

Its state lives in its own tables (``DevGatewayObject``), so every process of ``make run`` sees
the same "Stripe"; it is written in the caller's transaction (a rollback undoes it, as if the
call had never been made; the retry, with the same key, makes it again). ``get_gateway`` refuses
it in production settings, and settings refuse ``BILLING_GATEWAY=dev`` with DEBUG off.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import transaction

from billing.gateways.base import (
    CardDeclined,
    CustomerResult,
    EphemeralKey,
    IdempotencyKeyReused,
    InvalidGatewayRequest,
    PaymentIntentResult,
    PaymentMethodResult,
    RefundResult,
    SetupIntentResult,
    TransferResult,
    TransferReversalResult,
    WebhookEvent,
)
from billing.gateways.stripe import (
    StripeGateway,
    payment_intent_from,
    payment_method_from,
    refund_from,
    setup_intent_from,
)

PUBLISHABLE_KEY_PREFIX = "pk_test_dev"
API_VERSION = "2025-03-31.basil"
EPHEMERAL_KEY_SECONDS = 3600
_STRIPE_VERSION = re.compile(r"^20[0-9]{2}-[0-9]{2}-[0-9]{2}(\.[a-z]{1,20})?$")


@dataclass(frozen=True)
class DevCard:
    brand: str
    decline_code: str = ""  # declined when charged (or when saved, if ``declined_on_setup``)
    declined_on_setup: bool = False
    # "one_time": 3-D Secure for a one-time payment, none once saved with a SetupIntent;
    # "always": every payment, and an off-session charge is ``authentication_required``.
    authentication: str = ""


# Stripe's own test numbers (https://docs.stripe.com/testing), the ones billing cares about.
TEST_CARDS: Mapping[str, DevCard] = {
    "4242424242424242": DevCard("visa"),
    "5555555555554444": DevCard("mastercard"),
    "4000000000000002": DevCard("visa", decline_code="generic_decline", declined_on_setup=True),
    "4000000000009995": DevCard("visa", decline_code="insufficient_funds", declined_on_setup=True),
    "4000000000000341": DevCard("visa", decline_code="generic_decline"),
    "4000002500003155": DevCard("visa", authentication="one_time"),
    "4000002760003184": DevCard("visa", authentication="always"),
}


def card_number_normalise(number: str) -> str:
    return re.sub(r"[\s-]", "", number)


def dev_card(number: str) -> DevCard:
    card = TEST_CARDS.get(card_number_normalise(number))
    if card is None:
        raise InvalidGatewayRequest(
            "Not one of the development gateway's test cards.", code="invalid_number"
        )
    return card


def webhook_signature(*, payload: bytes, secret: str, timestamp: int) -> str:
    """Stripe's scheme: ``t=<ts>,v1=HMAC-SHA256(secret, "<ts>.<body>")``."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _new_id(prefix: str) -> str:
    return f"{prefix}_dev_{secrets.token_hex(12)}"


def _request_hash(params: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def _missing(what: str) -> InvalidGatewayRequest:
    return InvalidGatewayRequest(f"No such {what}.", code="resource_missing", http_status=404)


class DevGateway:
    """``base.PaymentGateway`` without Stripe (see the module's docstring)."""

    def __init__(self, *, webhook_secret: str, webhook_tolerance: int = 300):
        self._webhook_secret = webhook_secret
        # The signature check is exactly the Stripe gateway's (no key: it calls nothing else).
        self._verifier = StripeGateway(
            api_key="", webhook_secret=webhook_secret, webhook_tolerance=webhook_tolerance
        )

    # --- the interface ----------------------------------------------------------------------

    def customer_create(
        self, *, idempotency_key: str, metadata: Mapping[str, str]
    ) -> CustomerResult:
        params = {"metadata": dict(metadata)}
        with transaction.atomic():
            row = self._replay(idempotency_key, params)
            if row is None:
                row = self._create(
                    "cus",
                    "customer",
                    {"object": "customer", "metadata": dict(metadata)},
                    idempotency_key=idempotency_key,
                    params=params,
                )
        return CustomerResult(id=row.pk)

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
        params = {
            "amount": amount,
            "currency": currency.lower(),
            "customer": customer_id,
            "metadata": dict(metadata),
            "capture_manually": capture_manually,
            "payment_method": payment_method_id,
            "off_session": off_session,
        }
        with transaction.atomic():
            row = self._replay(idempotency_key, params)
            if row is not None:
                intent = row.data
                if intent.get("_declined"):  # Stripe replays the first answer: the same 402
                    raise self._declined(intent)
                return payment_intent_from(intent)
            if amount <= 0:
                raise InvalidGatewayRequest("Invalid amount.", code="parameter_invalid_integer")
            self._get("customer", customer_id)
            method = self._get("payment_method", payment_method_id) if payment_method_id else None
            pi_id = _new_id("pi")
            intent = {
                "object": "payment_intent",
                "amount": amount,
                "currency": currency.lower(),
                "customer": customer_id,
                "metadata": dict(metadata),
                "status": "requires_payment_method",
                "client_secret": f"{pi_id}_secret_{secrets.token_hex(12)}",
                "capture_method": "manual" if capture_manually else "automatic_async",
                "amount_received": 0,
                "latest_charge": None,
                "last_payment_error": None,
                "payment_method": None,
                "livemode": False,
            }
            row = self._create(
                "pi",
                "payment_intent",
                intent,
                idempotency_key=idempotency_key,
                params=params,
                object_id=pi_id,
            )
            self._event("payment_intent.created", row.data)
            if method is not None:
                if method.data.get("customer") != customer_id:
                    raise InvalidGatewayRequest(
                        "The payment method does not belong to this customer.",
                        code="payment_method_invalid_parameter",
                    )
                self._confirm(row.data, method.data, off_session=off_session)
                self._save(row)
        if row.data.get("_declined"):
            raise self._declined(row.data)
        return payment_intent_from(row.data)

    def payment_intent_retrieve(self, payment_intent_id: str) -> PaymentIntentResult:
        return payment_intent_from(self._get("payment_intent", payment_intent_id).data)

    def payment_intents_created_between(
        self, *, start: int, end: int
    ) -> Iterator[PaymentIntentResult]:
        from billing.models import DevGatewayObject

        rows = DevGatewayObject.objects.filter(
            kind="payment_intent", created__gte=start, created__lt=end
        ).order_by("-created", "-id")
        for row in rows.iterator():
            yield payment_intent_from(row.data)

    def payment_intent_cancel(
        self, *, payment_intent_id: str, idempotency_key: str
    ) -> PaymentIntentResult:
        with transaction.atomic():
            row = self._get("payment_intent", payment_intent_id, lock=True)
            intent = row.data
            if intent["status"] == "canceled" and intent.get("_cancel_key") == idempotency_key:
                return payment_intent_from(intent)  # a replay of the same request
            if intent["status"] in ("succeeded", "processing", "canceled"):
                raise InvalidGatewayRequest(
                    f"You cannot cancel this PaymentIntent because it has a status of "
                    f"{intent['status']}.",
                    code="payment_intent_unexpected_state",
                    http_status=400,
                )
            intent.update(status="canceled", _cancel_key=idempotency_key)
            intent["canceled_at"] = int(time.time())
            self._save(row)
            self._event("payment_intent.canceled", intent)
        return payment_intent_from(intent)

    def payment_intent_capture(
        self, *, payment_intent_id: str, amount: int, idempotency_key: str
    ) -> PaymentIntentResult:
        with transaction.atomic():
            row = self._get("payment_intent", payment_intent_id, lock=True)
            intent = row.data
            if intent["status"] == "succeeded" and intent.get("_capture_key") == idempotency_key:
                return payment_intent_from(intent)
            if intent["status"] != "requires_capture" or not 0 < amount <= intent["amount"]:
                raise InvalidGatewayRequest(
                    "This PaymentIntent could not be captured.",
                    code="payment_intent_unexpected_state",
                    http_status=400,
                )
            intent.update(status="succeeded", amount_received=amount, _capture_key=idempotency_key)
            self._save(row)
            self._event("payment_intent.succeeded", intent)
        return payment_intent_from(intent)

    def refund_create(
        self,
        *,
        idempotency_key: str,
        payment_intent_id: str,
        amount: int,
        metadata: Mapping[str, str],
    ) -> RefundResult:
        """A refund is ``pending`` when made; ``refund.updated`` (succeeded) and
        ``charge.refunded`` follow as events, as Stripe sends them."""
        params = {"payment_intent": payment_intent_id, "amount": amount, "metadata": dict(metadata)}
        with transaction.atomic():
            row = self._replay(idempotency_key, params)
            if row is not None:
                return refund_from(row.data)
            intent_row = self._get("payment_intent", payment_intent_id, lock=True)
            intent = intent_row.data
            left = int(intent["amount_received"]) - int(intent.get("_amount_refunded", 0))
            if intent["status"] != "succeeded" or not intent.get("latest_charge"):
                raise InvalidGatewayRequest(
                    "This PaymentIntent has no successful charge to refund.",
                    code="charge_not_refundable",
                    http_status=400,
                )
            if not 0 < amount <= left:
                raise InvalidGatewayRequest(
                    "The refund is larger than what is left of the charge.",
                    code="amount_too_large",
                    http_status=400,
                )
            refund = {
                "object": "refund",
                "amount": amount,
                "currency": intent["currency"],
                "payment_intent": payment_intent_id,
                "charge": intent["latest_charge"],
                "metadata": dict(metadata),
                "status": "pending",
            }
            created = self._create(
                "re", "refund", refund, idempotency_key=idempotency_key, params=params
            )
            answer = refund_from(created.data)
            intent["_amount_refunded"] = int(intent.get("_amount_refunded", 0)) + amount
            self._save(intent_row)
            # Then the card network settles it: what Stripe's test mode tells a moment later.
            created.data["status"] = "succeeded"
            self._save(created)
            self._event("charge.refunded", self._charge_of(intent))
            self._event("refund.updated", created.data)
        return answer

    def setup_intent_create(
        self, *, idempotency_key: str, customer_id: str, metadata: Mapping[str, str]
    ) -> SetupIntentResult:
        params = {"customer": customer_id, "metadata": dict(metadata)}
        with transaction.atomic():
            row = self._replay(idempotency_key, params)
            if row is None:
                self._get("customer", customer_id)
                seti_id = _new_id("seti")
                row = self._create(
                    "seti",
                    "setup_intent",
                    {
                        "object": "setup_intent",
                        "customer": customer_id,
                        "metadata": dict(metadata),
                        "usage": "off_session",
                        "status": "requires_payment_method",
                        "client_secret": f"{seti_id}_secret_{secrets.token_hex(12)}",
                        "payment_method": None,
                        "last_setup_error": None,
                        "livemode": False,
                    },
                    idempotency_key=idempotency_key,
                    params=params,
                    object_id=seti_id,
                )
        return setup_intent_from(row.data)

    def setup_intent_retrieve(self, setup_intent_id: str) -> SetupIntentResult:
        return setup_intent_from(self._get("setup_intent", setup_intent_id).data)

    def payment_method_retrieve(self, payment_method_id: str) -> PaymentMethodResult:
        return payment_method_from(self._get("payment_method", payment_method_id).data)

    def payment_method_detach(
        self, *, payment_method_id: str, idempotency_key: str
    ) -> PaymentMethodResult:
        with transaction.atomic():
            row = self._get("payment_method", payment_method_id, lock=True)
            method = row.data
            if method.get("customer") is None:
                if method.get("_detach_key") == idempotency_key:
                    return payment_method_from(method)
                raise InvalidGatewayRequest(
                    "The payment method is not attached to a customer.",
                    code="payment_method_unexpected_state",
                    http_status=400,
                )
            method.update(customer=None, _detach_key=idempotency_key)
            self._save(row)
            self._event("payment_method.detached", method)
        return payment_method_from(method)

    def ephemeral_key_create(self, *, customer_id: str, stripe_version: str) -> EphemeralKey:
        if not _STRIPE_VERSION.match(stripe_version):
            raise InvalidGatewayRequest("Invalid Stripe API version.", code="invalid_version")
        self._get("customer", customer_id)
        return EphemeralKey(
            id=_new_id("ephkey"),
            secret=f"ek_test_dev_{secrets.token_hex(16)}",
            customer_id=customer_id,
            expires=int(time.time()) + EPHEMERAL_KEY_SECONDS,
        )

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
        params = {
            "amount": amount,
            "currency": currency.lower(),
            "destination": destination,
            "transfer_group": transfer_group,
            "source_transaction": source_transaction,
            "metadata": dict(metadata),
        }
        with transaction.atomic():
            row = self._replay(idempotency_key, params)
            if row is None:
                row = self._create(
                    "tr",
                    "transfer",
                    {"object": "transfer", **params, "amount_reversed": 0},
                    idempotency_key=idempotency_key,
                    params=params,
                )
        return TransferResult(
            id=row.pk,
            amount=int(row.data["amount"]),
            currency=str(row.data["currency"]).upper(),
            amount_reversed=int(row.data["amount_reversed"]),
            destination=str(row.data["destination"]),
        )

    def transfer_reverse(
        self, *, idempotency_key: str, transfer_id: str, amount: int
    ) -> TransferReversalResult:
        params = {"transfer": transfer_id, "amount": amount}
        with transaction.atomic():
            row = self._replay(idempotency_key, params)
            if row is None:
                transfer = self._get("transfer", transfer_id, lock=True)
                left = int(transfer.data["amount"]) - int(transfer.data["amount_reversed"])
                if not 0 < amount <= left:
                    raise InvalidGatewayRequest(
                        "The reversal is larger than the transfer.", code="amount_too_large"
                    )
                transfer.data["amount_reversed"] = int(transfer.data["amount_reversed"]) + amount
                self._save(transfer)
                row = self._create(
                    "trr",
                    "transfer_reversal",
                    {"object": "transfer_reversal", "amount": amount, "transfer": transfer_id},
                    idempotency_key=idempotency_key,
                    params=params,
                )
        return TransferReversalResult(id=row.pk, amount=amount, transfer_id=transfer_id)

    def webhook_event_verify(self, *, payload: bytes, signature_header: str) -> WebhookEvent:
        return self._verifier.webhook_event_verify(
            payload=payload, signature_header=signature_header
        )

    # --- what Stripe.js / the mobile SDK does with a client secret ---------------------------

    def payment_intent_confirm(
        self, *, client_secret: str, card_number: str
    ) -> PaymentIntentResult:
        """The client pays with ``card_number`` (a test card), as ``stripe.confirmCardPayment``
        does. A decline is not an exception here (Stripe.js shows it): the intent says it."""
        card = dev_card(card_number)
        with transaction.atomic():
            row = self._by_client_secret("payment_intent", client_secret)
            intent = row.data
            if intent["status"] not in ("requires_payment_method", "requires_confirmation"):
                raise InvalidGatewayRequest(
                    f"This PaymentIntent's status is {intent['status']}.",
                    code="payment_intent_unexpected_state",
                    http_status=400,
                )
            method = self._card_method(card_number, card, customer=None)
            self._confirm(intent, method.data, off_session=False)
            intent.pop("_declined", None)  # on-session: Stripe.js reads the error from the intent
            self._save(row)
        return payment_intent_from(intent)

    def setup_intent_confirm(self, *, client_secret: str, card_number: str) -> SetupIntentResult:
        """The client saves ``card_number`` for later, as ``stripe.confirmCardSetup`` does."""
        card = dev_card(card_number)
        with transaction.atomic():
            row = self._by_client_secret("setup_intent", client_secret)
            setup = row.data
            if setup["status"] not in ("requires_payment_method", "requires_confirmation"):
                raise InvalidGatewayRequest(
                    f"This SetupIntent's status is {setup['status']}.",
                    code="setup_intent_unexpected_state",
                    http_status=400,
                )
            method = self._card_method(card_number, card, customer=None)
            setup["payment_method"] = method.pk
            if card.declined_on_setup:
                setup.update(
                    status="requires_payment_method",
                    payment_method=None,
                    last_setup_error={"code": "card_declined", "decline_code": card.decline_code},
                )
                self._event("setup_intent.setup_failed", setup)
            elif card.authentication:
                setup.update(status="requires_action", next_action={"type": "use_stripe_sdk"})
                self._event("setup_intent.requires_action", setup)
            else:
                self._setup_succeed(setup, method)
            self._save(row)
        return setup_intent_from(setup)

    def three_d_secure_complete(self, *, client_secret: str, approve: bool) -> str:
        """The client passes (``approve``) or fails the 3-D Secure challenge of the intent or
        SetupIntent ``client_secret`` names. Returns the object's new status."""
        kind = "setup_intent" if client_secret.startswith("seti_") else "payment_intent"
        with transaction.atomic():
            row = self._by_client_secret(kind, client_secret)
            obj = row.data
            if obj["status"] != "requires_action":
                raise InvalidGatewayRequest(
                    "Nothing is waiting for authentication.", code=f"{kind}_unexpected_state"
                )
            method = self._get("payment_method", obj["payment_method"], lock=True)
            obj.pop("next_action", None)
            if not approve:
                error = {"code": f"{kind}_authentication_failure"}
                if kind == "setup_intent":
                    obj.update(
                        status="requires_payment_method",
                        payment_method=None,
                        last_setup_error=error,
                    )
                    self._event("setup_intent.setup_failed", obj)
                else:
                    obj.update(
                        status="requires_payment_method",
                        payment_method=None,
                        last_payment_error=error,
                    )
                    self._event("payment_intent.payment_failed", obj)
            elif kind == "setup_intent":
                self._setup_succeed(obj, method)
            else:
                self._charge(obj)
            self._save(row)
        return str(obj["status"])

    # --- Stripe's behaviour -------------------------------------------------------------------

    def _confirm(
        self, intent: dict[str, Any], method: Mapping[str, Any], *, off_session: bool
    ) -> None:
        card = dev_card(str(method["_number"]))
        intent.update(payment_method=method["id"], last_payment_error=None)
        intent.pop("_declined", None)
        needs_authentication = card.authentication == "always" or (
            card.authentication == "one_time" and not method.get("_set_up_off_session")
        )
        if needs_authentication and off_session:
            # Stripe: 402 authentication_required, the intent left requires_payment_method.
            intent.update(
                status="requires_payment_method",
                last_payment_error={
                    "code": "authentication_required",
                    "decline_code": "authentication_required",
                    "payment_method": {"id": method["id"]},
                },
                _declined=True,
            )
            self._event("payment_intent.payment_failed", intent)
        elif needs_authentication:
            intent.update(status="requires_action", next_action={"type": "use_stripe_sdk"})
            self._event("payment_intent.requires_action", intent)
        elif card.decline_code:
            intent.update(
                status="requires_payment_method",
                last_payment_error={"code": "card_declined", "decline_code": card.decline_code},
                _declined=True,
            )
            self._event("payment_intent.payment_failed", intent)
        else:
            self._charge(intent)

    def _charge(self, intent: dict[str, Any]) -> None:
        intent["latest_charge"] = _new_id("ch")
        if intent.get("capture_method") == "manual":
            intent["status"] = "requires_capture"
            self._event("payment_intent.amount_capturable_updated", intent)
            return
        intent.update(status="succeeded", amount_received=intent["amount"])
        self._event("payment_intent.succeeded", intent)

    def _setup_succeed(self, setup: dict[str, Any], method_row: Any) -> None:
        method_row.data.update(customer=setup["customer"], _set_up_off_session=True)
        self._save(method_row)
        setup.update(status="succeeded", payment_method=method_row.pk, last_setup_error=None)
        self._event("setup_intent.succeeded", setup)

    def _declined(self, intent: Mapping[str, Any]) -> CardDeclined:
        error = intent.get("last_payment_error") or {}
        return CardDeclined(
            "The card was declined.",
            code=str(error.get("code") or "card_declined"),
            decline_code=str(error.get("decline_code") or ""),
            payment_intent=payment_intent_from(intent),
        )

    def _charge_of(self, intent: Mapping[str, Any]) -> dict[str, Any]:
        refunded = int(intent.get("_amount_refunded", 0))
        return {
            "id": intent["latest_charge"],
            "object": "charge",
            "payment_intent": intent["id"],
            "amount": intent["amount"],
            "amount_captured": intent["amount_received"],
            "amount_refunded": refunded,
            "refunded": refunded >= int(intent["amount_received"]),
            "currency": intent["currency"],
            "livemode": False,
            "metadata": intent.get("metadata") or {},
        }

    def _card_method(self, number: str, card: DevCard, *, customer: str | None) -> Any:
        last4 = card_number_normalise(number)[-4:]
        return self._create(
            "pm",
            "payment_method",
            {
                "object": "payment_method",
                "type": "card",
                "customer": customer,
                "card": {
                    "brand": card.brand,
                    "last4": last4,
                    "exp_month": 12,
                    "exp_year": datetime.now(tz=UTC).year + 3,
                },
                # The test card's number is kept (it is public) to replay its behaviour later.
                "_number": card_number_normalise(number),
            },
        )

    # --- storage ------------------------------------------------------------------------------

    def _create(
        self,
        prefix: str,
        kind: str,
        data: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        params: Mapping[str, Any] | None = None,
        object_id: str | None = None,
    ) -> Any:
        from billing.models import DevGatewayObject

        object_id = object_id or _new_id(prefix)
        created = int(time.time())
        return DevGatewayObject.objects.create(
            id=object_id,
            kind=kind,
            idempotency_key=idempotency_key,
            request_hash=_request_hash(params or {}),
            data={"id": object_id, "created": created, **data},
            created=created,
        )

    def _replay(self, idempotency_key: str, params: Mapping[str, Any]) -> Any:
        from billing.models import DevGatewayObject

        row = DevGatewayObject.objects.filter(idempotency_key=idempotency_key).first()
        if row is not None and row.request_hash != _request_hash(params):
            raise IdempotencyKeyReused(
                "An idempotency key was reused with different parameters.",
                code="idempotency_key_in_use",
                http_status=400,
            )
        return row

    def _get(self, kind: str, object_id: str | None, *, lock: bool = False) -> Any:
        from billing.models import DevGatewayObject

        rows = DevGatewayObject.objects.filter(kind=kind, pk=object_id or "")
        row = (rows.select_for_update() if lock else rows).first()
        if row is None:
            raise _missing(kind)
        return row

    def _by_client_secret(self, kind: str, client_secret: str) -> Any:
        object_id = client_secret.split("_secret_", 1)[0]
        row = self._get(kind, object_id, lock=True)
        if not hmac.compare_digest(str(row.data.get("client_secret", "")), client_secret):
            raise _missing(kind)
        return row

    def _save(self, row: Any) -> None:
        row.save(update_fields=["data"])

    def _event(self, event_type: str, obj: Mapping[str, Any]) -> None:
        """Record an event for the webhook endpoint (private ``_`` fields left out), delivered
        once the current transaction commits."""
        from billing.models import DevGatewayEvent

        created = int(time.time())
        event_id = _new_id("evt")
        body = {
            "id": event_id,
            "object": "event",
            "api_version": API_VERSION,
            "created": created,
            "livemode": False,
            "pending_webhooks": 1,
            "type": event_type,
            "data": {"object": {k: v for k, v in obj.items() if not k.startswith("_")}},
        }
        DevGatewayEvent.objects.create(
            event_id=event_id,
            type=event_type,
            body=json.dumps(body, separators=(",", ":")),
            created_at=datetime.fromtimestamp(created, tz=UTC),
        )
        from django.conf import settings

        if settings.BILLING_DEV_EVENTS_AFTER_COMMIT:
            from api.jobs import enqueue_after_commit
            from billing.tasks import deliver_dev_events

            enqueue_after_commit(deliver_dev_events)
