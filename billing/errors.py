"""Billing's refusals, mapped to problem+json by the shared handler (api/errors.py)."""

from __future__ import annotations

from rest_framework import status

from api.errors import ConflictError, DomainError


class PaymentPendingError(DomainError):
    """Stripe could not be reached after the bounded retries: nothing was charged twice, the
    booking keeps its state, and the same request may be retried."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "payment_pending"
    title = "Service unavailable"


class WebhookRejectedError(DomainError):
    code = "invalid_webhook"
    title = "Bad request"


class WebhooksNotConfiguredError(DomainError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "webhooks_not_configured"
    title = "Service unavailable"


class PaymentsNotConfiguredError(DomainError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "payments_not_configured"
    title = "Service unavailable"


class NotAwaitingAuthenticationError(ConflictError):
    """The payment is not a fee waiting for the client to authenticate it (3-D Secure)."""

    code = "not_awaiting_authentication"
