"""Saved payment methods: SetupIntents (usage off_session), the ``setup_intent.succeeded``
webhook, and the client's list and removal of their cards.

localstripe creates, confirms and retrieves SetupIntents and payment methods and detaches
methods, so those calls go to it. It sends no ``setup_intent.*`` webhook at all, so the events
are built in Stripe's current shape and signed with Stripe's scheme (``stripe_doubles``).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from django.utils import timezone

from api.models import User
from audit.models import AuditEvent
from billing.models import PaymentMethodSetup, SavedPaymentMethod, StripeEvent
from billing.services.methods import payment_method_setup_start
from tests.billing.conftest import (
    WireRequest,
    post_webhook,
    save_card_at_stripe,
    saved_card,
    succeeded_event,
)
from tests.billing.stripe_doubles import LocalStripe, event, setup_intent_object, signed
from tests.factories import api_client_for

pytestmark = pytest.mark.integration

NOW = timezone.now()
SETUP_URL = "/api/v1/billing/payment-methods/setup"
METHODS_URL = "/api/v1/billing/payment-methods"


def test_a_client_starts_saving_a_card_on_their_customer_for_off_session_use(
    localstripe: LocalStripe, client_user: User, stripe_wire: list[WireRequest]
) -> None:
    response = api_client_for(client_user, mfa=False).post(SETUP_URL)
    assert response.status_code == 200
    body = response.json()
    setup = PaymentMethodSetup.objects.get()
    assert body == {
        "setup_id": str(setup.pk),
        "state": "requires_payment_method",
        "client_secret": body["client_secret"],
    }
    assert body["client_secret"].startswith(f"{setup.stripe_setup_intent_id}_secret_")
    (request,) = [r for r in stripe_wire if r.url.endswith("/v1/setup_intents")]
    sent = dict(parse_qsl(request.body))
    assert sent["customer"] == setup.stripe_customer_id
    assert sent["usage"] == "off_session"
    assert request.idempotency_key == f"billing:setup_intent:{client_user.pk}:1"
    audit = AuditEvent.objects.get(action="billing.payment_method.setup")
    assert (audit.actor_id, audit.patient_id) == (client_user.pk, client_user.pk)


def test_pay_02_asking_twice_gives_the_same_open_setup_intent(
    localstripe: LocalStripe, client_user: User, stripe_wire: list[WireRequest]
) -> None:
    """PAY-02 (for setups): a double click reuses the open SetupIntent instead of a second."""
    api = api_client_for(client_user, mfa=False)
    first = api.post(SETUP_URL).json()
    second = api.post(SETUP_URL).json()
    assert first == second
    assert PaymentMethodSetup.objects.count() == 1
    assert len([r for r in stripe_wire if r.url.endswith("/v1/setup_intents")]) == 1


def test_setup_intent_succeeded_stores_the_card_once(
    localstripe: LocalStripe, client_user: User
) -> None:
    setup = payment_method_setup_start(client=client_user, request=None, now=NOW).setup
    method_id = save_card_at_stripe(
        localstripe, str(setup.stripe_setup_intent_id), "4242424242424242"
    )
    body = signed(succeeded_event(setup, method_id, event_id="evt_setup_ok"))

    assert post_webhook(*body).status_code == 200
    assert post_webhook(*body).status_code == 200  # Stripe retries: nothing more happens

    saved = SavedPaymentMethod.objects.get()
    assert (saved.client_id, saved.stripe_payment_method_id) == (client_user.pk, method_id)
    assert (saved.brand, saved.last4, saved.exp_month, saved.exp_year) == ("visa", "4242", 4, 2031)
    setup.refresh_from_db()
    assert setup.state == "succeeded"
    assert StripeEvent.objects.get().outcome == "applied"
    assert AuditEvent.objects.filter(action="billing.payment_method.saved").count() == 1
    # The next card the client saves gets a new SetupIntent.
    again = payment_method_setup_start(client=client_user, request=None, now=NOW).setup
    assert again.version == 2


def test_a_setup_event_for_an_intent_we_did_not_create_saves_nothing(
    localstripe: LocalStripe, client_user: User
) -> None:
    stranger = event(
        "setup_intent.succeeded",
        setup_intent_object(
            setup_intent_id="seti_unknown",
            status="succeeded",
            customer="cus_x",
            payment_method="pm_x",
        ),
        event_id="evt_setup_unknown",
    )
    assert post_webhook(*signed(stranger)).status_code == 200
    assert StripeEvent.objects.get().outcome == "unknown_object"
    assert SavedPaymentMethod.objects.count() == 0
    assert AuditEvent.objects.filter(action="billing.webhook.unknown_setup_intent").count() == 1


def test_a_setup_event_naming_another_customer_saves_nothing(
    localstripe: LocalStripe, client_user: User
) -> None:
    setup = payment_method_setup_start(client=client_user, request=None, now=NOW).setup
    forged = event(
        "setup_intent.succeeded",
        setup_intent_object(
            setup_intent_id=str(setup.stripe_setup_intent_id),
            status="succeeded",
            customer="cus_someone_else",
            payment_method="pm_card_visa",
        ),
        event_id="evt_setup_forged",
    )
    assert post_webhook(*signed(forged)).status_code == 200
    assert SavedPaymentMethod.objects.count() == 0
    setup.refresh_from_db()
    assert setup.state == "requires_payment_method"
    flag = AuditEvent.objects.get(action="billing.webhook.customer_mismatch")
    assert flag.patient_id == client_user.pk


def test_a_client_lists_only_their_own_cards_and_the_read_is_audited(
    localstripe: LocalStripe, client_user: User, outsider: User
) -> None:
    saved_card(localstripe, client_user)
    saved_card(localstripe, outsider, number="5555555555554444")

    response = api_client_for(client_user, mfa=False).get(METHODS_URL)

    assert response.status_code == 200
    mine = SavedPaymentMethod.objects.get(client=client_user)
    assert response.json() == [
        {
            "id": str(mine.pk),
            "brand": "visa",
            "last4": "4242",
            "exp_month": 4,
            "exp_year": 2031,
            "is_default": True,
            "created_at": response.json()[0]["created_at"],
        }
    ]
    audit = AuditEvent.objects.get(resource_type="billing.payment_method", action="list")
    assert (audit.actor_id, audit.patient_id, audit.details) == (
        client_user.pk,
        client_user.pk,
        {
            "route": "api/v1/billing/payment-methods",
            "method": "GET",
            "ids": [str(mine.pk)],
            "count": 1,
        },
    )


def test_a_client_removes_their_card_and_it_is_detached_at_stripe(
    localstripe: LocalStripe, client_user: User, stripe_wire: list[WireRequest]
) -> None:
    method_id = saved_card(localstripe, client_user)
    mine = SavedPaymentMethod.objects.get()

    response = api_client_for(client_user, mfa=False).delete(f"{METHODS_URL}/{mine.pk}")

    assert response.status_code == 204
    mine.refresh_from_db()
    assert mine.detached_at is not None
    (detach,) = [
        r for r in stripe_wire if r.url.endswith(f"/v1/payment_methods/{method_id}/detach")
    ]
    assert detach.idempotency_key == f"billing:payment_method_detach:{mine.pk}"
    assert api_client_for(client_user, mfa=False).get(METHODS_URL).json() == []
    # One row: the service's report stands for the DELETE (the mixin adds no second one).
    [audit] = AuditEvent.objects.filter(action__in=["billing.payment_method.detach", "delete"])
    assert (audit.action, audit.outcome, audit.resource_id, audit.patient_id) == (
        "billing.payment_method.detach",
        "allowed",
        str(mine.pk),
        client_user.pk,
    )


def test_someone_elses_card_cannot_be_removed(
    localstripe: LocalStripe, client_user: User, outsider: User, stripe_wire: list[WireRequest]
) -> None:
    saved_card(localstripe, client_user)
    mine = SavedPaymentMethod.objects.get()
    sent_before = len(stripe_wire)

    response = api_client_for(outsider, mfa=False).delete(f"{METHODS_URL}/{mine.pk}")

    assert response.status_code == 404
    mine.refresh_from_db()
    assert mine.detached_at is None
    assert len(stripe_wire) == sent_before
    # AUD-02: one denied row naming the card and, recorded but not disclosed, its client.
    denied = AuditEvent.objects.get(outcome="denied")
    assert (denied.action, denied.outcome, denied.resource_id, denied.actor_id) == (
        "delete",
        "denied",
        str(mine.pk),
        outsider.pk,
    )
    assert denied.patient_id == client_user.pk


@pytest.mark.parametrize("role", ["therapist", "compliance_officer"])
def test_only_clients_save_cards(request: pytest.FixtureRequest, role: str) -> None:
    staff = request.getfixturevalue(role)
    api = api_client_for(staff)
    assert api.post(SETUP_URL).status_code == 403
    assert api.get(METHODS_URL).status_code == 403
    assert PaymentMethodSetup.objects.count() == 0
