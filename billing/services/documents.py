"""Serving receipts and superbills: the read, and its audit row, together."""

from __future__ import annotations

import uuid

from django.http import HttpRequest

from api.errors import NotFoundError
from api.models import User
from audit.models import Outcome
from audit.services import audit_record
from billing.documents import Receipt, Superbill, receipt_for, superbill_for


def receipt_read(*, payment_id: uuid.UUID, user: User, request: HttpRequest | None) -> Receipt:
    try:
        receipt = receipt_for(payment_id=payment_id, user=user)
    except NotFoundError:
        audit_record(
            action="billing.receipt.read",
            actor=user,
            request=request,
            outcome=Outcome.DENIED,
            resource_type="payment",
            resource_id=str(payment_id),
            details={"why": "not_found"},
        )
        raise
    audit_record(
        action="billing.receipt.read",
        actor=user,
        request=request,
        resource_type="payment",
        resource_id=str(payment_id),
        patient_id=receipt.client_id,
    )
    return receipt


def superbill_read(
    *, client: User, year: int, month: int, request: HttpRequest | None
) -> Superbill:
    bill = superbill_for(client=client, year=year, month=month)
    audit_record(
        action="billing.superbill.read",
        actor=client,
        request=request,
        resource_type="superbill",
        resource_id=bill.month,
        patient_id=client.pk,
        details={"sessions": len(bill.lines)},
    )
    return bill
