"""PAY-16: nothing sent to Stripe describes care. Stripe signs no BAA.

Every test of this suite runs through ``stripe_wire`` (conftest.py), which checks each request on
the wire. This file runs a whole payment with a client whose name and email are themselves
sensitive, and proves the checker would catch a leak.
"""

from __future__ import annotations

import pytest

from api.models import Role
from billing.gateways import get_gateway
from billing.services.lifecycle import payment_refresh
from billing.services.refunds import refund_create
from tests.billing.conftest import WireRequest, client_sdk, opaque_violations, start_payment
from tests.billing.stripe_doubles import LocalStripe
from tests.clock import clock_instant
from tests.factories import make_user

# Webhooks are applied at the real time: bookings must be held now, not on a fixed date.
NOW = clock_instant()  # the instant the views run at (tests/clock.py)
SENSITIVE = ("Jane Panic-Disorder", "jane.ptsd@example.test", "Trauma Therapist")


@pytest.mark.integration
def test_pay_16_a_whole_payment_sends_stripe_only_opaque_ids(
    localstripe: LocalStripe, stripe_wire: list[WireRequest], db: None
) -> None:
    client = make_user(role=Role.CLIENT, full_name=SENSITIVE[0], email=SENSITIVE[1])
    therapist = make_user(role=Role.THERAPIST, full_name=SENSITIVE[2])
    payment = start_payment(client=client, therapist=therapist, now=NOW).payment
    sdk = client_sdk(localstripe)
    sdk.v1.payment_intents.update(
        str(payment.stripe_payment_intent_id), params={"payment_method": "pm_card_visa"}
    )
    sdk.v1.payment_intents.confirm(str(payment.stripe_payment_intent_id))
    payment_refresh(payment_id=payment.pk, now=NOW)
    refund_create(payment_id=payment.pk, amount_minor=2000, reason="goodwill", now=NOW)
    get_gateway().setup_intent_create(
        idempotency_key=f"billing:setup_intent:{client.pk}:1",
        customer_id=payment.stripe_customer_id,
        metadata={"user_ref": str(client.pk)},
    )

    paths = {r.url.split("/v1/", 1)[1].split("/")[0] for r in stripe_wire}
    assert {"customers", "payment_intents", "refunds", "setup_intents"} <= paths
    for request in stripe_wire:
        assert opaque_violations(request) == []
        for value in SENSITIVE:
            assert value.lower() not in request.body.lower()
            assert value.lower() not in request.url.lower()


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("amount=100&description=Session+with+Dr+X", "description is sent"),
        ("amount=100&statement_descriptor_suffix=THERAPY", "statement_descriptor_suffix is sent"),
        ("email=jane%40example.com", "email is sent"),
        ("name=Jane", "name is sent"),
        ("metadata[diagnosis]=F41.0", "metadata key 'diagnosis' is not an opaque reference"),
        ("metadata[payment_ref]=couples-therapy", "metadata 'payment_ref' is not an opaque id"),
        ("metadata[booking_ref]=Anxiety", "metadata 'booking_ref' is not an opaque id"),
    ],
)
def test_pay_16_the_wire_check_catches_leaks(body: str, why: str) -> None:
    request = WireRequest("post", "http://127.0.0.1/v1/payment_intents", "k", body)
    assert why in opaque_violations(request)
