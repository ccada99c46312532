"""Payment providers behind one small interface (``base.PaymentGateway``)."""

from __future__ import annotations

import functools

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from billing.gateways.base import PaymentGateway
from billing.gateways.dev import DevGateway
from billing.gateways.stripe import StripeGateway


def get_gateway() -> PaymentGateway:
    """The configured gateway (one per distinct configuration, reused across requests):
    Stripe, or with ``BILLING_GATEWAY=dev`` the development gateway, never in production."""
    if settings.BILLING_GATEWAY == "dev":
        if settings.PRODUCTION:
            raise ImproperlyConfigured("The development payment gateway is refused in production.")
        return _dev_gateway(
            settings.STRIPE_WEBHOOK_SECRET, settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS
        )
    return _gateway(
        settings.STRIPE_SECRET_KEY,
        settings.STRIPE_WEBHOOK_SECRET,
        settings.STRIPE_API_BASE,
        settings.STRIPE_CONNECT_TIMEOUT_SECONDS,
        settings.STRIPE_READ_TIMEOUT_SECONDS,
        settings.STRIPE_MAX_RETRIES,
        settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS,
    )


@functools.lru_cache(maxsize=8)
def _gateway(
    api_key: str,
    webhook_secret: str,
    api_base: str,
    connect_timeout: float,
    read_timeout: float,
    max_retries: int,
    webhook_tolerance: int,
) -> StripeGateway:
    return StripeGateway(
        api_key=api_key,
        webhook_secret=webhook_secret,
        api_base=api_base,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_retries=max_retries,
        webhook_tolerance=webhook_tolerance,
    )


@functools.lru_cache(maxsize=4)
def _dev_gateway(webhook_secret: str, webhook_tolerance: int) -> DevGateway:
    return DevGateway(webhook_secret=webhook_secret, webhook_tolerance=webhook_tolerance)
