"""Billing's request and response shapes."""

from __future__ import annotations

from rest_framework import serializers

from api.serializers import StrictInputSerializer
from billing.documents import npi_is_valid
from billing.models import Payment, SavedPaymentMethod
from billing.services.payments import MAX_AMOUNT_MINOR


class WebhookAckSerializer(serializers.Serializer):
    received = serializers.BooleanField()


class PayIn(StrictInputSerializer):
    """Nothing is needed: the price is the booking's. ``amount`` and ``currency`` are accepted
    only so a client that sends them keeps working; they are checked, then ignored (PAY-01)."""

    amount = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_AMOUNT_MINOR, help_text="Ignored."
    )
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False, help_text="Ignored.")


class PaymentOut(serializers.ModelSerializer):
    booking = serializers.UUIDField(source="booking_id", read_only=True)
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


class PayOut(serializers.Serializer):
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
    state = serializers.CharField(source="setup.state")
    client_secret = serializers.CharField(
        help_text="For Stripe.js / the mobile SDK to collect and save the card; never log it."
    )
