"""Billing routes, mounted under ``/api/v1/``."""

from django.urls import path

from billing.views import (
    PaymentAuthenticateView,
    PaymentMethodDefaultView,
    PaymentMethodSetupView,
    PaymentMethodsView,
    PaymentMethodView,
    PaymentsView,
    PayView,
    ProviderBillingView,
    ReceiptPrintView,
    ReceiptView,
    StripeWebhookView,
    SuperbillPrintView,
    SuperbillView,
)

urlpatterns = [
    path("billing/webhooks/stripe", StripeWebhookView.as_view(), name="billing-stripe-webhook"),
    path("billing/payments", PaymentsView.as_view(), name="billing-payments"),
    path("bookings/<uuid:booking_id>/pay", PayView.as_view(), name="booking-pay"),
    path(
        "billing/payments/<uuid:payment_id>/receipt",
        ReceiptView.as_view(),
        name="billing-receipt",
    ),
    path(
        "billing/payments/<uuid:payment_id>/receipt/print",
        ReceiptPrintView.as_view(),
        name="billing-receipt-print",
    ),
    path(
        "billing/payments/<uuid:payment_id>/authenticate",
        PaymentAuthenticateView.as_view(),
        name="billing-payment-authenticate",
    ),
    path(
        "billing/superbills/<int:year>/<int:month>",
        SuperbillView.as_view(),
        name="billing-superbill",
    ),
    path(
        "billing/superbills/<int:year>/<int:month>/print",
        SuperbillPrintView.as_view(),
        name="billing-superbill-print",
    ),
    path("billing/provider", ProviderBillingView.as_view(), name="billing-provider"),
    path("billing/payment-methods", PaymentMethodsView.as_view(), name="billing-payment-methods"),
    path(
        "billing/payment-methods/setup",
        PaymentMethodSetupView.as_view(),
        name="billing-payment-method-setup",
    ),
    path(
        "billing/payment-methods/<uuid:method_id>",
        PaymentMethodView.as_view(),
        name="billing-payment-method",
    ),
    path(
        "billing/payment-methods/<uuid:method_id>/default",
        PaymentMethodDefaultView.as_view(),
        name="billing-payment-method-default",
    ),
]
