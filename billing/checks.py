"""``manage.py check --deploy``: billing cannot run without its Stripe secrets, nor on the
development gateway."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register


@register(Tags.security, deploy=True)
def stripe_configured(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    problems: list[CheckMessage] = []
    if settings.BILLING_GATEWAY == "dev":
        problems.append(
            Error(
                "The development payment gateway is selected (BILLING_GATEWAY=dev): it takes no "
                "money and must never serve real clients.",
                hint="Set STRIPE_SECRET_KEY and BILLING_GATEWAY=stripe.",
                id="billing.E006",
            )
        )
    if not settings.STRIPE_SECRET_KEY:
        problems.append(Error("STRIPE_SECRET_KEY is not set.", id="billing.E001"))
    if not settings.STRIPE_WEBHOOK_SECRET.strip():
        problems.append(
            Error(
                "STRIPE_WEBHOOK_SECRET is not set: the webhook endpoint refuses every event.",
                id="billing.E002",
            )
        )
    publishable = settings.STRIPE_PUBLISHABLE_KEY
    if not publishable.startswith("pk_"):
        problems.append(
            Error(
                "STRIPE_PUBLISHABLE_KEY is not a publishable key (pk_...): /pay answers 503.",
                id="billing.E004",
            )
        )
    elif publishable.startswith("pk_live_") != settings.STRIPE_LIVEMODE:
        problems.append(
            Error(
                "STRIPE_PUBLISHABLE_KEY's mode (pk_live_/pk_test_) is not STRIPE_LIVEMODE's.",
                id="billing.E005",
            )
        )
    if not settings.STRIPE_API_BASE.startswith("https://"):
        problems.append(Error("STRIPE_API_BASE must be an https:// URL.", id="billing.E003"))
    return problems
