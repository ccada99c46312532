"""The database keeps billing's invariants even if a service were wrong."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import IntegrityError, transaction

from api.models import User
from billing.models import Payment, Refund
from tests.billing.conftest import make_payment

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def refused(**changes: object) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Payment.objects.filter(pk=changes.pop("pk")).update(**changes)


def test_payment_amounts_and_currency_are_checked(client_user: User, therapist: User) -> None:
    payment = make_payment(client=client_user, therapist=therapist, now=NOW)
    refused(pk=payment.pk, amount_minor=0)
    refused(pk=payment.pk, amount_minor=-5)
    refused(pk=payment.pk, currency="usd")
    refused(pk=payment.pk, amount_captured_minor=12001)
    refused(pk=payment.pk, state="paid")
    refused(pk=payment.pk, purpose="donation")
    refused(pk=payment.pk, version=0)


def test_pay_12_refunded_can_never_exceed_captured(client_user: User, therapist: User) -> None:
    payment = make_payment(
        client=client_user, therapist=therapist, now=NOW, state="succeeded", captured_minor=5000
    )
    refused(pk=payment.pk, amount_refunded_minor=5001)
    refused(pk=payment.pk, amount_refunded_minor=-1)


def test_pay_02_one_payment_per_booking_purpose_and_version(
    client_user: User, therapist: User
) -> None:
    """PAY-02: the database refuses a second payment for one (booking, purpose, version)."""
    payment = make_payment(client=client_user, therapist=therapist, now=NOW)
    with pytest.raises(IntegrityError), transaction.atomic():
        Payment.objects.create(
            booking_id=payment.booking_id,
            purpose=payment.purpose,
            version=payment.version,
            client=client_user,
            amount_minor=100,
            currency="USD",
            created_at=NOW,
            updated_at=NOW,
        )


def test_pay_12_one_refund_per_payment_and_sequence(client_user: User, therapist: User) -> None:
    payment = make_payment(
        client=client_user, therapist=therapist, now=NOW, state="succeeded", captured_minor=5000
    )
    fields = {"payment": payment, "amount_minor": 100, "reason": "goodwill", "created_at": NOW}
    Refund.objects.create(sequence=1, idempotency_key="k1", updated_at=NOW, **fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        Refund.objects.create(sequence=1, idempotency_key="k2", updated_at=NOW, **fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        Refund.objects.create(sequence=2, idempotency_key="k1", updated_at=NOW, **fields)
