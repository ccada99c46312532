"""Serving receipts and superbills. Their views are ``AuditedMixin`` views serving
``billing.payment``: each payment a document shows is ``touch``-ed here, so the mixin records
the read (a receipt: one ``read`` of its payment; a superbill: one ``list`` row naming the
payments it covers), or the denial (404)."""

from __future__ import annotations

import uuid

from api.models import User
from audit.services import touch
from billing.documents import Receipt, Superbill, receipt_for, receipt_payment, superbill_for


def receipt_read(*, payment_id: uuid.UUID, user: User) -> Receipt:
    payment = receipt_payment(payment_id=payment_id, user=user)
    touch(payment)
    return receipt_for(payment=payment)


def superbill_read(*, client: User, year: int, month: int) -> Superbill:
    bill = superbill_for(client=client, year=year, month=month)
    for payment in bill.payments:
        touch(payment)
    return bill
