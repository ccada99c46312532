"""The billing admin is read-only, except the Connect account link of a provider."""

from __future__ import annotations

import pytest
from django.utils import timezone

from api.models import User
from billing.models import ProviderBilling
from tests.billing.conftest import make_payment
from tests.factories import admin_browser


@pytest.mark.parametrize(
    "model",
    [
        "payment",
        "paymentevent",
        "refund",
        "stripeevent",
        "stripecustomer",
        "transfer",
        "providerbilling",
    ],
)
def test_lists_render_and_nothing_can_be_added(
    admin_user: User, client_user: User, therapist: User, model: str
) -> None:
    make_payment(client=client_user, therapist=therapist, now=timezone.now())
    browser = admin_browser(admin_user)
    assert browser.get(f"/admin/billing/{model}/").status_code == 200
    assert browser.get(f"/admin/billing/{model}/add/").status_code == 403


def test_payouts_enabled_is_not_editable(admin_user: User, therapist: User) -> None:
    record = ProviderBilling.objects.create(user=therapist, updated_at=timezone.now())
    browser = admin_browser(admin_user)
    response = browser.post(
        f"/admin/billing/providerbilling/{record.pk}/change/",
        {"npi": "1234567893", "stripe_account_id": "acct_9", "payouts_enabled": "on"},
    )
    assert response.status_code == 302
    record.refresh_from_db()
    assert (record.stripe_account_id, record.payouts_enabled) == ("acct_9", False)
