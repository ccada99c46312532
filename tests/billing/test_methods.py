"""Saved payment methods: SetupIntents (usage off_session), the ``setup_intent.succeeded``
webhook, and the client's list and removal of their cards.

localstripe creates, confirms and retrieves SetupIntents and payment methods and detaches
methods, so those calls go to it. It sends no ``setup_intent.*`` webhook at all, so the events
are built in Stripe's current shape and signed with Stripe's scheme (``stripe_doubles``).
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

import pytest
from django.db import IntegrityError, transaction

from api.models import User
from audit.models import AuditEvent
from billing.gateways.stripe import StripeGateway
from billing.models import PaymentMethodSetup, SavedPaymentMethod, StripeEvent
from billing.selectors import payment_method_default
from billing.services.lifecycle import billing_settle
from billing.services.methods import (
    UNUSABLE_PAYMENT_METHOD,
    payment_method_setup_start,
    setup_card_save,
)
from tests.billing.conftest import (
    WireRequest,
    post_webhook,
    save_card_at_stripe,
    saved_card,
    succeeded_event,
)
from tests.billing.stripe_doubles import (
    LocalStripe,
    event,
    payment_method_object,
    setup_intent_object,
    signed,
)
from tests.clock import clock_instant
from tests.factories import api_client_for

pytestmark = pytest.mark.integration

NOW = clock_instant()  # the instant the views run at (tests/clock.py)
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


def test_setup_intent_succeeded_stores_the_card_once_after_the_webhook_commits(
    localstripe: LocalStripe,
    client_user: User,
    stripe_wire: list[WireRequest],
    django_capture_on_commit_callbacks: Any,
) -> None:
    """The webhook records which card Stripe attached and answers without calling Stripe; the
    task it leaves for after its commit reads the card's details and saves it, once."""
    setup = payment_method_setup_start(client=client_user, request=None, now=NOW).setup
    method_id = save_card_at_stripe(
        localstripe, str(setup.stripe_setup_intent_id), "4242424242424242"
    )
    body = signed(succeeded_event(setup, method_id, event_id="evt_setup_ok"))
    sent_before = len(stripe_wire)

    with django_capture_on_commit_callbacks() as after_commit:
        assert post_webhook(*body).status_code == 200

    assert stripe_wire[sent_before:] == []  # the webhook called nothing at Stripe
    setup.refresh_from_db()
    assert (setup.state, setup.stripe_payment_method_id) == ("succeeded", method_id)
    assert not SavedPaymentMethod.objects.exists()
    [save_card] = after_commit
    save_card()
    save_card()  # a retried task saves nothing twice and asks Stripe nothing more
    with django_capture_on_commit_callbacks(execute=True) as replayed:
        assert post_webhook(*body).status_code == 200  # Stripe retries: nothing more happens
    assert replayed == []

    saved = SavedPaymentMethod.objects.get()
    assert (saved.client_id, saved.stripe_payment_method_id) == (client_user.pk, method_id)
    assert (saved.brand, saved.last4, saved.exp_month, saved.exp_year) == ("visa", "4242", 4, 2031)
    assert [r.url.rsplit("/v1/", 1)[1] for r in stripe_wire[sent_before:]] == [
        f"payment_methods/{method_id}"
    ]
    assert StripeEvent.objects.get().outcome == "applied"
    assert AuditEvent.objects.filter(action="billing.payment_method.saved").count() == 1
    # The next card the client saves gets a new SetupIntent.
    again = payment_method_setup_start(client=client_user, request=None, now=NOW).setup
    assert again.version == 2


def test_billing_settle_saves_a_card_whose_task_never_ran(
    localstripe: LocalStripe, client_user: User, django_capture_on_commit_callbacks: Any
) -> None:
    """The broker was down when the webhook committed: a minute on, the sweep saves the card."""
    setup = payment_method_setup_start(client=client_user, request=None, now=NOW).setup
    method_id = save_card_at_stripe(
        localstripe, str(setup.stripe_setup_intent_id), "5555555555554444"
    )
    with django_capture_on_commit_callbacks():  # collected, never run: the task is lost
        body = signed(succeeded_event(setup, method_id, event_id="evt_setup_lost"))
        assert post_webhook(*body).status_code == 200
    setup.refresh_from_db()

    assert billing_settle(now=setup.updated_at)["cards_saved"] == 0  # too new: a task may run
    assert billing_settle(now=setup.updated_at + timedelta(minutes=2))["cards_saved"] == 1
    assert billing_settle(now=setup.updated_at + timedelta(minutes=3))["cards_saved"] == 0

    saved = SavedPaymentMethod.objects.get()
    assert (saved.stripe_payment_method_id, saved.last4, saved.setup_id) == (
        method_id,
        "4444",
        setup.pk,
    )


def test_a_payment_method_that_is_not_a_usable_card_is_marked_and_never_asked_for_again(
    localstripe: LocalStripe,
    client_user: User,
    stripe_wire: list[WireRequest],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    setup = payment_method_setup_start(client=client_user, request=None, now=NOW).setup
    method_id = save_card_at_stripe(
        localstripe, str(setup.stripe_setup_intent_id), "4242424242424242"
    )
    PaymentMethodSetup.objects.filter(pk=setup.pk).update(
        state="succeeded", stripe_payment_method_id=method_id
    )
    real_retrieve = StripeGateway.payment_method_retrieve

    def not_a_card(self: Any, payment_method_id: str) -> Any:
        return dataclasses.replace(real_retrieve(self, payment_method_id), type="sepa_debit")

    monkeypatch.setattr(StripeGateway, "payment_method_retrieve", not_a_card)

    assert setup_card_save(setup_id=setup.pk, now=NOW) is False
    setup.refresh_from_db()
    assert setup.last_error_code == UNUSABLE_PAYMENT_METHOD
    asked = len(stripe_wire)
    assert setup_card_save(setup_id=setup.pk, now=NOW) is False
    assert billing_settle(now=NOW + timedelta(minutes=5))["cards_saved"] == 0
    assert len(stripe_wire) == asked  # not asked again
    assert not SavedPaymentMethod.objects.exists()


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


# --- Cards detached at Stripe (payment_method.detached) -----------------------------------------


def detached_event(payment_method_id: str, *, event_id: str, **kwargs: Any) -> dict[str, Any]:
    return event(
        "payment_method.detached",
        payment_method_object(payment_method_id=payment_method_id, **kwargs),
        event_id=event_id,
    )


def test_a_card_detached_at_stripe_is_removed_here_once_and_audited_as_a_system_event(
    localstripe: LocalStripe, client_user: User
) -> None:
    method_id = saved_card(localstripe, client_user)
    mine = SavedPaymentMethod.objects.get()
    body = signed(detached_event(method_id, event_id="evt_pm_detached"))

    assert post_webhook(*body).status_code == 200
    assert post_webhook(*body).status_code == 200  # Stripe retries: nothing more happens

    mine.refresh_from_db()
    assert mine.detached_at is not None
    assert StripeEvent.objects.get(event_id="evt_pm_detached").outcome == "applied"
    [audit] = AuditEvent.objects.filter(action="billing.payment_method.detached")
    assert (audit.actor_id, audit.actor_label, audit.resource_id, audit.patient_id) == (
        None,
        "system",
        str(mine.pk),
        client_user.pk,
    )
    assert audit.details["stripe_event"] == "evt_pm_detached"
    assert api_client_for(client_user, mfa=False).get(METHODS_URL).json() == []
    # Another event for the same card (Stripe's order is not ours): recorded, changes nothing.
    detached_at = mine.detached_at
    again = signed(detached_event(method_id, event_id="evt_pm_detached_again"))
    assert post_webhook(*again).status_code == 200
    mine.refresh_from_db()
    assert mine.detached_at == detached_at
    assert StripeEvent.objects.get(event_id="evt_pm_detached_again").outcome == "stale"
    assert AuditEvent.objects.filter(action="billing.payment_method.detached").count() == 1


def test_pay_09_a_detached_card_we_do_not_know_changes_nothing_whatever_its_metadata_says(
    localstripe: LocalStripe, client_user: User
) -> None:
    """PAY-09: the card is found by our stored Stripe id only; metadata naming our card (or its
    client) is not followed. Unknown → 200, recorded and audited as a security event."""
    saved_card(localstripe, client_user)
    mine = SavedPaymentMethod.objects.get()
    forged = detached_event(
        "pm_not_ours",
        event_id="evt_pm_unknown",
        metadata={"payment_method_ref": str(mine.pk), "user_ref": str(client_user.pk)},
    )

    assert post_webhook(*signed(forged)).status_code == 200

    mine.refresh_from_db()
    assert mine.detached_at is None
    assert StripeEvent.objects.get(event_id="evt_pm_unknown").outcome == "unknown_object"
    flag = AuditEvent.objects.get(action="billing.webhook.unknown_payment_method")
    assert (flag.outcome, flag.resource_id, flag.patient_id) == ("denied", "evt_pm_unknown", None)
    assert not AuditEvent.objects.filter(action="billing.payment_method.detached").exists()


# --- Choosing the default card ---------------------------------------------------------------


def default_url(method: SavedPaymentMethod) -> str:
    return f"{METHODS_URL}/{method.pk}/default"


def two_cards(localstripe: LocalStripe, client: User) -> tuple[SavedPaymentMethod, ...]:
    """The client's cards, oldest first (the newer is the default until one is chosen)."""
    saved_card(localstripe, client)
    saved_card(localstripe, client, number="5555555555554444")
    older, newer = SavedPaymentMethod.objects.filter(client=client).order_by("created_at", "pk")
    return older, newer


def test_a_client_chooses_their_default_card_and_fees_go_to_it(
    localstripe: LocalStripe, client_user: User
) -> None:
    older, newer = two_cards(localstripe, client_user)
    assert payment_method_default(client_id=client_user.pk) == newer  # none chosen: newest
    api = api_client_for(client_user, mfa=False)

    response = api.put(default_url(older))

    assert response.status_code == 200
    assert response.json() == {
        "id": str(older.pk),
        "brand": "visa",
        "last4": "4242",
        "exp_month": 4,
        "exp_year": 2031,
        "is_default": True,
        "created_at": response.json()["created_at"],
    }
    assert payment_method_default(client_id=client_user.pk) == older
    listed = api.get(METHODS_URL).json()
    assert [(card["id"], card["is_default"]) for card in listed] == [
        (str(older.pk), True),
        (str(newer.pk), False),
    ]
    # One row: the service's report stands for the PUT (the mixin adds no ``update``).
    [audit] = AuditEvent.objects.filter(action__in=["billing.payment_method.default", "update"])
    assert (audit.action, audit.outcome, audit.actor_id, audit.resource_id, audit.patient_id) == (
        "billing.payment_method.default",
        "allowed",
        client_user.pk,
        str(older.pk),
        client_user.pk,
    )
    # Choosing the other one moves the choice; choosing it again changes nothing more.
    assert api.put(default_url(newer)).status_code == 200
    assert api.put(default_url(newer)).status_code == 200
    assert list(
        SavedPaymentMethod.objects.filter(client=client_user, is_default=True).values_list(
            "pk", flat=True
        )
    ) == [newer.pk]


def test_when_the_chosen_card_is_removed_the_newest_card_left_is_the_default(
    localstripe: LocalStripe, client_user: User
) -> None:
    older, newer = two_cards(localstripe, client_user)
    third_id = saved_card(localstripe, client_user, number="4000056655665556")
    newest = SavedPaymentMethod.objects.get(stripe_payment_method_id=third_id)
    api = api_client_for(client_user, mfa=False)
    assert api.put(default_url(older)).status_code == 200

    assert api.delete(f"{METHODS_URL}/{older.pk}").status_code == 204

    older.refresh_from_db()
    assert older.is_default is False
    assert payment_method_default(client_id=client_user.pk) == newest
    # The same when Stripe detaches the chosen card (payment_method.detached).
    assert api.put(default_url(newer)).status_code == 200
    body = signed(detached_event(newer.stripe_payment_method_id, event_id="evt_pm_gone"))
    assert post_webhook(*body).status_code == 200
    newer.refresh_from_db()
    assert (newer.is_default, newer.detached_at is not None) == (False, True)
    assert payment_method_default(client_id=client_user.pk) == newest


def test_a_card_saved_after_a_choice_becomes_the_default(
    localstripe: LocalStripe, client_user: User
) -> None:
    """A failed fee asks the client to add a card: the card they add is the one used next."""
    older, newer = two_cards(localstripe, client_user)
    assert api_client_for(client_user, mfa=False).put(default_url(older)).status_code == 200

    added_id = saved_card(localstripe, client_user, number="4000056655665556")

    added = SavedPaymentMethod.objects.get(stripe_payment_method_id=added_id)
    assert payment_method_default(client_id=client_user.pk) == added
    assert not SavedPaymentMethod.objects.filter(is_default=True).exists()


def test_someone_elses_or_a_removed_card_cannot_be_made_the_default(
    localstripe: LocalStripe, client_user: User, outsider: User
) -> None:
    """AZ-01 / AUD-02: 404 (no existence oracle), audited as denied, nothing changed."""
    older, newer = two_cards(localstripe, client_user)
    api = api_client_for(client_user, mfa=False)
    assert api.delete(f"{METHODS_URL}/{older.pk}").status_code == 204

    assert api_client_for(outsider, mfa=False).put(default_url(newer)).status_code == 404
    assert api.put(default_url(older)).status_code == 404
    assert api.put(f"{METHODS_URL}/{uuid.uuid4()}/default").status_code == 404

    assert not SavedPaymentMethod.objects.filter(is_default=True).exists()
    denied = AuditEvent.objects.filter(outcome="denied").order_by("id")
    assert [(d.action, d.actor_id, d.resource_id) for d in denied][:2] == [
        ("update", outsider.pk, str(newer.pk)),
        ("update", client_user.pk, str(older.pk)),
    ]
    assert denied[0].patient_id == client_user.pk
    assert not AuditEvent.objects.filter(action="billing.payment_method.default").exists()


def test_the_database_refuses_two_defaults_for_one_client_and_a_removed_default(
    localstripe: LocalStripe, client_user: User
) -> None:
    older, newer = two_cards(localstripe, client_user)
    SavedPaymentMethod.objects.filter(pk=older.pk).update(is_default=True)

    with pytest.raises(IntegrityError), transaction.atomic():
        SavedPaymentMethod.objects.filter(pk=newer.pk).update(is_default=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        SavedPaymentMethod.objects.filter(pk=older.pk).update(detached_at=NOW)

    assert list(
        SavedPaymentMethod.objects.filter(is_default=True).values_list("pk", flat=True)
    ) == [older.pk]


@pytest.mark.parametrize("role", ["therapist", "compliance_officer"])
def test_only_clients_choose_a_default_card(request: pytest.FixtureRequest, role: str) -> None:
    staff = request.getfixturevalue(role)
    assert api_client_for(staff).put(f"{METHODS_URL}/{uuid.uuid4()}/default").status_code == 403
