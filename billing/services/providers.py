"""A therapist's billing identity (NPI)."""

from __future__ import annotations

from datetime import datetime

from django.http import HttpRequest

from api.models import User
from audit.services import audit_record
from billing.models import ProviderBilling


def provider_billing_set_npi(
    *, therapist: User, npi: str, request: HttpRequest | None, now: datetime
) -> ProviderBilling:
    """Set the NPI printed on the therapist's receipts and superbills (validated by the caller's
    serializer; the database checks the shape)."""
    record, _ = ProviderBilling.objects.update_or_create(
        user=therapist, defaults={"npi": npi, "updated_at": now}
    )
    audit_record(
        action="billing.provider.npi_set",
        actor=therapist,
        request=request,
        resource_type="provider_billing",
        resource_id=str(record.pk),
    )
    return record
