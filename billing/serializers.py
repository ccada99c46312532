"""Billing's request and response shapes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from api.serializers import StrictInputSerializer
from billing.documents import npi_is_valid
from billing.models import Payment, SavedPaymentMethod, SetupState
from billing.selectors import booking_session_payment, payment_api_state
from billing.services.payments import MAX_AMOUNT_MINOR
from billing.states import ApiState

if TYPE_CHECKING:
    from scheduling.models import Booking

STATE_HELP = "The payment's state (Stripe's states in one spelling, plus ours). " + " ".join(
    f"`{value}`: {label}" for value, label in ApiState.choices
)
# An API version of Stripe's, as its SDKs send it: 2020-08-27, 2025-03-31.basil.
STRIPE_VERSION = r"^20[0-9]{2}-[0-9]{2}-[0-9]{2}(\.[a-z]{1,20})?$"


@extend_schema_field(serializers.ChoiceField(choices=ApiState.choices, help_text=STATE_HELP))
class PaymentStateField(serializers.Field):
    """Renders a payment (``source="*"``) as its API state (``billing.states.ApiState``)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("source", "*")
        kwargs.setdefault("read_only", True)
        kwargs.setdefault("help_text", STATE_HELP)
        super().__init__(**kwargs)

    def to_representation(self, payment: Payment) -> str:
        return payment_api_state(payment)


class WebhookAckSerializer(serializers.Serializer):
    received = serializers.BooleanField()


class PayIn(StrictInputSerializer):
    """Nothing is needed: the price is the booking's. ``amount`` and ``currency`` are accepted
    only so a client that sends them keeps working; they are checked, then ignored (PAY-01)."""

    amount = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_AMOUNT_MINOR, help_text="Ignored."
    )
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False, help_text="Ignored.")
    stripe_version = serializers.RegexField(
        STRIPE_VERSION,
        required=False,
        max_length=32,
        help_text="The Stripe API version the app's Stripe SDK speaks (iOS "
        "`STPAPIClient.apiVersion`, Android `ApiVersion.API_VERSION_CODE`, React Native: the "
        "iOS/Android one it wraps). When given, the answer carries an ephemeral key for the "
        "client's Stripe customer made in that version, for PaymentSheet to show and save "
        "cards; without it `ephemeral_key_secret` is null (Stripe.js needs none).",
    )


class PaymentOut(serializers.ModelSerializer):
    booking = serializers.UUIDField(source="booking_id", read_only=True)
    state = PaymentStateField()
    failure_code = serializers.CharField(
        source="last_error_code",
        read_only=True,
        help_text="Why the last attempt failed (e.g. card_declined, authentication_required, "
        "no_saved_payment_method); empty otherwise.",
    )

    class Meta:
        model = Payment
        fields = [
            "id",
            "booking",
            "purpose",
            "version",
            "state",
            "amount_minor",
            "currency",
            "amount_captured_minor",
            "amount_refunded_minor",
            "failure_code",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class BookingPaymentOut(serializers.Serializer):
    """A booking's session payment as its responses carry it."""

    id = serializers.UUIDField(read_only=True, help_text="The payment (GET /billing/payments).")
    state = PaymentStateField()


def booking_payment_out(booking: Booking) -> dict[str, Any] | None:
    """The ``payment`` of a booking's responses (``scheduling.bookings.contributions``): its
    session payment (the latest attempt), or None before /pay."""
    payment = booking_session_payment(booking)
    return BookingPaymentOut(payment).data if payment is not None else None


class PaymentsQuery(serializers.Serializer):
    """``GET /billing/payments`` filters (the cursor and page size are the paginator's)."""

    booking = serializers.UUIDField(
        required=False,
        help_text="Only this booking's payments (its session payment and any fees); none when "
        "the booking is not the caller's.",
    )


class PayOut(serializers.Serializer):
    """What Stripe's PaymentSheet (iOS, Android, React Native) or Stripe.js needs."""

    payment = PaymentOut()
    client_secret = serializers.CharField(
        help_text="The PaymentIntent's client secret, for Stripe.js / the mobile SDK to confirm "
        "the payment (PaymentSheet's `paymentIntentClientSecret`); never log it."
    )
    payment_intent_id = serializers.CharField(help_text="The Stripe PaymentIntent id (`pi_…`).")
    customer_id = serializers.CharField(
        help_text="The client's Stripe Customer id (`cus_…`): PaymentSheet's "
        "`customer.id` / `CustomerConfiguration.id`."
    )
    ephemeral_key_secret = serializers.CharField(
        allow_null=True,
        help_text="A short-lived key for that customer (PaymentSheet's `ephemeralKeySecret`), "
        "made in the request's `stripe_version`; null when the request named none. A secret: "
        "never log it.",
    )
    ephemeral_key_expires_at = serializers.DateTimeField(
        allow_null=True,
        help_text="When the ephemeral key expires (call /pay again for a new one); null with "
        "no key.",
    )
    publishable_key = serializers.CharField(
        help_text="The Stripe publishable key (`pk_…`) to initialise the SDK with "
        "(`STRIPE_PUBLISHABLE_KEY`)."
    )


class AuthenticateOut(serializers.Serializer):
    """A fee waiting for the client's 3-D Secure: what the app confirms it with."""

    payment = PaymentOut()
    client_secret = serializers.CharField(
        help_text="For Stripe.js / the mobile SDK to confirm the payment; never log it."
    )


class ProviderOut(serializers.Serializer):
    name = serializers.CharField()
    npi = serializers.CharField()
    licences = serializers.ListField(child=serializers.CharField())


class ReceiptOut(serializers.Serializer):
    number = serializers.CharField()
    payment_id = serializers.UUIDField()
    paid_at = serializers.DateTimeField(allow_null=True)
    date_of_service = serializers.DateField()
    provider = ProviderOut()
    service = serializers.CharField()
    amount_paid_minor = serializers.IntegerField()
    amount_refunded_minor = serializers.IntegerField()
    net_minor = serializers.IntegerField()
    currency = serializers.CharField()


class SuperbillLineOut(serializers.Serializer):
    date_of_service = serializers.DateField()
    cpt_code = serializers.CharField()
    service = serializers.CharField()
    duration_minutes = serializers.IntegerField()
    provider = ProviderOut()
    amount_paid_minor = serializers.IntegerField()
    currency = serializers.CharField()


class SuperbillOut(serializers.Serializer):
    month = serializers.CharField()
    client_name = serializers.CharField()
    lines = SuperbillLineOut(many=True)
    totals_minor = serializers.DictField(child=serializers.IntegerField())


class ProviderBillingIn(StrictInputSerializer):
    npi = serializers.CharField(min_length=10, max_length=10)

    def validate_npi(self, value: str) -> str:
        if not npi_is_valid(value):
            raise serializers.ValidationError("Not a valid NPI (10 digits, Luhn check).")
        return value


class ProviderBillingOut(serializers.Serializer):
    npi = serializers.CharField()
    payouts_enabled = serializers.BooleanField()


class SavedPaymentMethodOut(serializers.ModelSerializer):
    is_default = serializers.SerializerMethodField(
        help_text="Off-session fees are charged to this card: the one the client chose "
        "(PUT .../default), or else the one saved last."
    )

    class Meta:
        model = SavedPaymentMethod
        fields = ["id", "brand", "last4", "exp_month", "exp_year", "is_default", "created_at"]
        read_only_fields = fields

    def get_is_default(self, method: SavedPaymentMethod) -> bool:
        return bool(self.context.get("default_id") == method.pk)


class SetupOut(serializers.Serializer):
    setup_id = serializers.UUIDField(source="setup.pk")
    state = serializers.ChoiceField(choices=SetupState.choices, source="setup.state")
    client_secret = serializers.CharField(
        help_text="For Stripe.js / the mobile SDK to collect and save the card; never log it."
    )
