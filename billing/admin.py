"""Billing in the admin: read-only. Money moves only through the services and Stripe."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from audit.admin import AuditedModelAdmin
from billing.models import (
    Payment,
    PaymentEvent,
    ProviderBilling,
    Refund,
    StripeCustomer,
    StripeEvent,
    Transfer,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Payment)
class PaymentAdmin(AuditedModelAdmin, ReadOnlyAdmin):
    """A protected model (``billing.payment``): viewing its pages is audited."""

    list_display = ("id", "purpose", "version", "state", "amount_minor", "currency", "created_at")
    list_filter = ("state", "purpose")
    search_fields = ("=id", "=booking__id", "=stripe_payment_intent_id")


@admin.register(PaymentEvent)
class PaymentEventAdmin(ReadOnlyAdmin):
    list_display = ("payment_id", "from_state", "to_state", "reason", "occurred_at")


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ("id", "payment_id", "sequence", "amount_minor", "state", "reason")


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ("event_id", "type", "outcome", "livemode", "received_at")
    list_filter = ("outcome", "type")
    search_fields = ("=event_id", "=object_id")


@admin.register(StripeCustomer)
class StripeCustomerAdmin(ReadOnlyAdmin):
    list_display = ("stripe_customer_id", "user_id", "created_at")


@admin.register(Transfer)
class TransferAdmin(ReadOnlyAdmin):
    list_display = ("payment_id", "state", "amount_minor", "fee_minor", "amount_reversed_minor")
    list_filter = ("state",)


@admin.register(ProviderBilling)
class ProviderBillingAdmin(admin.ModelAdmin):
    """Operators link a therapist to their Stripe connected account; whether it can receive
    payouts comes from Stripe (``account.updated``), never from a form."""

    list_display = ("user_id", "npi", "stripe_account_id", "payouts_enabled")
    fields = ("user", "npi", "stripe_account_id", "payouts_enabled", "updated_at")
    readonly_fields = ("user", "payouts_enabled", "updated_at")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
