"""The development gateway (billing/gateways/dev.py): Stripe's test mode played locally.

Each test card behaves as at Stripe; its events reach the domain through the real webhook path,
signed, exactly once; a cancellation in time is refunded; production settings refuse it; and the
README journey (book → pay → confirmed → cancel → refund) runs over HTTP with nothing else.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import TestCase
from django.utils import timezone

from api.models import User
from api.settings import billing_gateway_choose
from audit.models import AuditEvent
from billing import gateways
from billing.checks import stripe_configured
from billing.gateways.base import CardDeclined, IdempotencyKeyReused
from billing.gateways.dev import DevGateway, webhook_signature
from billing.models import (
    DevGatewayEvent,
    DevGatewayObject,
    Payment,
    PaymentEvent,
    Refund,
    SavedPaymentMethod,
    StripeEvent,
)
from billing.services.dev_events import (
    dev_events_deliver,
    dev_payment_confirm,
    dev_setup_confirm,
)
from billing.services.fees import fee_charge
from billing.services.lifecycle import billing_settle
from billing.services.methods import payment_method_setup_start
from billing.services.payments import booking_payment_start
from scheduling.models import Booking, BookingStatus, SessionType
from tests.api.test_settings import clean_env, production_secrets, run_python, startup_error
from tests.billing.conftest import booking_for, post_webhook
from tests.factories import api_client_for
from tests.scheduling.conftest import make_therapist

DEV_SECRET = "whsec_dev_tests"
DEV_PK = "pk_test_dev_tests"
VISA = "4242 4242 4242 4242"
DECLINED = "4000000000000002"
THREE_D_SECURE = "4000002500003155"
ALWAYS_AUTHENTICATE = "4000002760003184"
CHARGE_FAILS = "4000000000000341"


@pytest.fixture(autouse=True)
def dev_gateway(settings: Any) -> DevGateway:
    settings.BILLING_GATEWAY = "dev"
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_PUBLISHABLE_KEY = DEV_PK
    settings.STRIPE_WEBHOOK_SECRET = DEV_SECRET
    settings.STRIPE_LIVEMODE = False
    gateway = gateways.get_gateway()
    assert isinstance(gateway, DevGateway)
    return gateway


def start(client: User, booking: Booking) -> Payment:
    sheet = booking_payment_start(
        booking_id=booking.pk, client=client, request=None, now=timezone.now()
    )
    assert sheet.client_secret.startswith(f"{sheet.payment_intent_id}_secret_")
    assert sheet.publishable_key == DEV_PK
    return sheet.payment


def state_of(payment: Payment) -> tuple[str, str, str]:
    payment.refresh_from_db()
    booking = Booking.objects.get(pk=payment.booking_id)
    return payment.state, payment.last_error_code, booking.status


def outcomes() -> list[tuple[str, str]]:
    return list(StripeEvent.objects.order_by("id").values_list("type", "outcome"))


# --- test cards -------------------------------------------------------------------------------


def test_4242_pays_and_its_event_confirms_the_booking_through_the_webhook_path(
    client_user: User, therapist: User
) -> None:
    payment = start(
        client_user, booking_for(client=client_user, therapist=therapist, now=timezone.now())
    )
    status = dev_payment_confirm(payment=payment, card_number=VISA)
    assert status == "succeeded"
    assert state_of(payment) == ("succeeded", "", BookingStatus.CONFIRMED)
    assert outcomes() == [
        ("payment_intent.created", "stale"),
        ("payment_intent.succeeded", "applied"),
    ]
    change = PaymentEvent.objects.get(payment=payment, to_state="succeeded")
    assert change.reason == "payment_intent.succeeded"
    assert change.stripe_event_id.startswith("evt_dev_")
    assert set(DevGatewayEvent.objects.values_list("state", flat=True)) == {"delivered"}


def test_declined_card_fails_the_payment_and_releases_the_hold(
    client_user: User, therapist: User
) -> None:
    payment = start(
        client_user, booking_for(client=client_user, therapist=therapist, now=timezone.now())
    )
    assert dev_payment_confirm(payment=payment, card_number=DECLINED) == "requires_payment_method"
    assert state_of(payment) == (
        "requires_payment_method",
        "generic_decline",
        BookingStatus.CANCELLED,
    )
    # The state does not move (it waits for a card either way): the event records the decline
    # and releases the slot.
    assert outcomes()[-1] == ("payment_intent.payment_failed", "stale")


@pytest.mark.parametrize(
    ("three_d_secure", "expected"),
    [
        ("approve", ("succeeded", "", BookingStatus.CONFIRMED)),
        (
            "fail",
            (
                "requires_payment_method",
                "payment_intent_authentication_failure",
                BookingStatus.CANCELLED,
            ),
        ),
    ],
)
def test_3155_asks_for_3d_secure_then_follows_the_clients_answer(
    client_user: User, therapist: User, three_d_secure: str, expected: tuple[str, str, str]
) -> None:
    payment = start(
        client_user, booking_for(client=client_user, therapist=therapist, now=timezone.now())
    )
    left = dev_payment_confirm(payment=payment, card_number=THREE_D_SECURE, three_d_secure="leave")
    assert left == "requires_action"
    assert state_of(payment) == ("requires_action", "", BookingStatus.HELD)
    dev_payment_confirm(payment=payment, card_number=THREE_D_SECURE, three_d_secure=three_d_secure)
    assert state_of(payment) == expected


def test_an_unknown_card_number_is_refused_and_changes_nothing(
    client_user: User, therapist: User
) -> None:
    payment = start(
        client_user, booking_for(client=client_user, therapist=therapist, now=timezone.now())
    )
    with pytest.raises(CommandError, match="invalid_number"):
        call_command(
            "dev_pay", payment=str(payment.pk), card="4111111111111112", stdout=io.StringIO()
        )
    assert state_of(payment) == ("requires_payment_method", "", BookingStatus.HELD)


# --- saved cards and off-session charges --------------------------------------------------------


def saved(client: User, number: str) -> SavedPaymentMethod:
    setup = payment_method_setup_start(client=client, request=None, now=timezone.now()).setup
    with TestCase.captureOnCommitCallbacks(execute=True):  # the card is saved after commit
        status = dev_setup_confirm(setup=setup, card_number=number)
    assert status == "succeeded"
    return SavedPaymentMethod.objects.get(client=client, detached_at=None)


def fee_for(client: User, therapist: User) -> Payment:
    booking = booking_for(
        client=client, therapist=therapist, now=timezone.now(), status=BookingStatus.CANCELLED
    )
    return fee_charge(
        booking=booking,
        purpose=Payment.Purpose.LATE_CANCELLATION_FEE,
        amount_minor=3000,
        currency="USD",
        now=timezone.now(),
    )


def test_a_saved_card_arrives_by_the_setup_intent_succeeded_webhook(client_user: User) -> None:
    method = saved(client_user, VISA)
    assert (method.brand, method.last4, method.stripe_payment_method_id[:7]) == (
        "visa",
        "4242",
        "pm_dev_",
    )
    assert ("setup_intent.succeeded", "applied") in outcomes()


@pytest.mark.parametrize(
    ("card", "state", "code"),
    [
        (VISA, "succeeded", ""),
        # Saved with a SetupIntent: Stripe asks no 3-D Secure off-session for this one.
        (THREE_D_SECURE, "succeeded", ""),
        (CHARGE_FAILS, "failed", "generic_decline"),
        (ALWAYS_AUTHENTICATE, "requires_payment_method", "authentication_required"),
    ],
)
def test_off_session_fee_charges_follow_the_saved_card(
    client_user: User, therapist: User, card: str, state: str, code: str
) -> None:
    saved(client_user, card)
    fee = fee_for(client_user, therapist)
    dev_events_deliver()
    fee.refresh_from_db()
    assert (fee.state, fee.last_error_code) == (state, code)


def test_a_fee_waiting_for_3d_secure_is_collected_once_the_client_authenticates(
    client_user: User, therapist: User
) -> None:
    saved(client_user, ALWAYS_AUTHENTICATE)
    fee = fee_for(client_user, therapist)
    out = io.StringIO()
    call_command("dev_pay", payment=str(fee.pk), card=ALWAYS_AUTHENTICATE, stdout=out)
    assert json.loads(out.getvalue())["payment_state"] == "succeeded"


def test_the_same_key_gets_the_same_object_and_other_terms_are_refused(
    db: None, dev_gateway: DevGateway
) -> None:
    customer = dev_gateway.customer_create(idempotency_key="k:c", metadata={}).id
    first = dev_gateway.payment_intent_create(
        idempotency_key="k:1", amount=500, currency="USD", customer_id=customer, metadata={}
    )
    again = dev_gateway.payment_intent_create(
        idempotency_key="k:1", amount=500, currency="USD", customer_id=customer, metadata={}
    )
    assert again == first
    with pytest.raises(IdempotencyKeyReused):
        dev_gateway.payment_intent_create(
            idempotency_key="k:1", amount=900, currency="USD", customer_id=customer, metadata={}
        )
    assert DevGatewayObject.objects.filter(kind="payment_intent").count() == 1


def test_a_declined_off_session_charge_is_replayed_as_the_same_decline(
    dev_gateway: DevGateway, client_user: User
) -> None:
    method = saved(client_user, DECLINED.replace("0002", "0341"))
    params: dict[str, Any] = {
        "idempotency_key": "k:fee",
        "amount": 700,
        "currency": "USD",
        "customer_id": method.setup.stripe_customer_id,
        "metadata": {},
        "payment_method_id": method.stripe_payment_method_id,
        "off_session": True,
    }
    with pytest.raises(CardDeclined) as first:
        dev_gateway.payment_intent_create(**params)
    with pytest.raises(CardDeclined) as replay:
        dev_gateway.payment_intent_create(**params)
    assert first.value.payment_intent == replay.value.payment_intent
    assert first.value.decline_code == replay.value.decline_code == "generic_decline"


# --- events: signed, through the webhook path, exactly once -------------------------------------


def test_events_replayed_through_the_deliverer_and_the_endpoint_change_nothing(
    client_user: User, therapist: User
) -> None:
    payment = start(
        client_user, booking_for(client=client_user, therapist=therapist, now=timezone.now())
    )
    dev_payment_confirm(payment=payment, card_number=VISA)
    before = (
        state_of(payment),
        PaymentEvent.objects.count(),
        AuditEvent.objects.count(),
        StripeEvent.objects.count(),
    )
    DevGatewayEvent.objects.update(state=DevGatewayEvent.State.PENDING)
    assert dev_events_deliver() == 2
    assert set(DevGatewayEvent.objects.values_list("outcome", flat=True)) == {"duplicate"}
    for event in DevGatewayEvent.objects.all():
        payload = event.body.encode()
        sig = webhook_signature(payload=payload, secret=DEV_SECRET, timestamp=int(time_now()))
        assert post_webhook(payload, sig).status_code == 200
    after = (
        state_of(payment),
        PaymentEvent.objects.count(),
        AuditEvent.objects.count(),
        StripeEvent.objects.count(),
    )
    assert after == before


def time_now() -> float:
    return timezone.now().timestamp()


def test_an_event_signed_with_another_secret_is_refused_by_the_endpoint(
    client_user: User, therapist: User, settings: Any
) -> None:
    payment = start(
        client_user, booking_for(client=client_user, therapist=therapist, now=timezone.now())
    )
    dev_payment_confirm(payment=payment, card_number=VISA, three_d_secure="leave")
    body = DevGatewayEvent.objects.order_by("id").last()
    assert body is not None
    payload = body.body.encode()
    sig = webhook_signature(payload=payload, secret="whsec_other", timestamp=int(time_now()))
    before = StripeEvent.objects.count()
    assert post_webhook(payload, sig).status_code == 400
    assert StripeEvent.objects.count() == before


def test_events_are_delivered_after_the_causing_transaction_commits(
    client_user: User,
    therapist: User,
    dev_gateway: DevGateway,
    django_capture_on_commit_callbacks: Any,
) -> None:
    payment = start(
        client_user, booking_for(client=client_user, therapist=therapist, now=timezone.now())
    )
    intent = dev_gateway.payment_intent_retrieve(str(payment.stripe_payment_intent_id))
    with django_capture_on_commit_callbacks(execute=True):
        dev_gateway.payment_intent_confirm(client_secret=intent.client_secret, card_number=VISA)
    assert state_of(payment) == ("succeeded", "", BookingStatus.CONFIRMED)
    assert not DevGatewayEvent.objects.exclude(state="delivered").exists()


def test_a_failed_delivery_stays_pending_and_is_delivered_by_the_job(
    client_user: User, therapist: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    payment = start(
        client_user, booking_for(client=client_user, therapist=therapist, now=timezone.now())
    )

    def down(**kwargs: Any) -> None:
        raise ConnectionError("database went away")

    monkeypatch.setattr("billing.services.dev_events.webhook_receive", down)
    dev_payment_confirm(payment=payment, card_number=VISA)
    pending = DevGatewayEvent.objects.get(type="payment_intent.created")
    assert (pending.state, pending.attempts, pending.last_error) == (
        "pending",
        1,
        "ConnectionError",
    )
    assert state_of(payment)[0] == "requires_payment_method"
    monkeypatch.undo()
    out = io.StringIO()
    call_command("dev_gateway_deliver", stdout=out)
    assert json.loads(out.getvalue()) == {"delivered": 2}
    assert state_of(payment) == ("succeeded", "", BookingStatus.CONFIRMED)


# --- refunds --------------------------------------------------------------------------------


def test_a_cancellation_in_time_is_refunded_in_full(client_user: User, therapist: User) -> None:
    from scheduling.bookings.services import booking_cancel

    booking = booking_for(client=client_user, therapist=therapist, now=timezone.now())
    payment = start(client_user, booking)
    dev_payment_confirm(payment=payment, card_number=VISA)
    booking_cancel(
        booking_id=booking.pk,
        by=client_user,
        reason="other",
        now=timezone.now(),
    )
    billing_settle(now=timezone.now())
    refund = Refund.objects.get(payment=payment)
    assert (refund.state, refund.amount_minor, refund.stripe_refund_id[:7]) == (
        "pending",
        12000,
        "re_dev_",
    )
    dev_events_deliver()
    refund.refresh_from_db()
    payment.refresh_from_db()
    assert refund.state == "succeeded"
    assert (payment.state, payment.amount_refunded_minor) == ("refunded", 12000)
    assert ("refund.updated", "applied") in outcomes()


# --- never in production ----------------------------------------------------------------------


def test_the_choice_of_gateway() -> None:
    choose = billing_gateway_choose
    assert choose(requested="", debug=True, stripe_secret_key="") == "dev"
    assert choose(requested="", debug=True, stripe_secret_key="sk_test_x") == "stripe"
    assert choose(requested="", debug=False, stripe_secret_key="") == "stripe"
    with pytest.raises(ImproperlyConfigured, match="DEBUG off"):
        choose(requested="dev", debug=False, stripe_secret_key="")
    with pytest.raises(ImproperlyConfigured):
        choose(requested="dummy", debug=True, stripe_secret_key="")


def test_production_settings_refuse_to_start_on_the_dev_gateway() -> None:
    env = clean_env(DJANGO_DEBUG="0", BILLING_GATEWAY="dev", **production_secrets())
    assert "development payment gateway cannot be used with DEBUG off" in startup_error(env)


def test_make_run_settings_choose_the_dev_gateway_with_fake_keys() -> None:
    code = (
        "from django.conf import settings as s; "
        "print(s.BILLING_GATEWAY, s.STRIPE_PUBLISHABLE_KEY[:11], s.STRIPE_WEBHOOK_SECRET[:10])"
    )
    result = run_python(code, clean_env(DJANGO_DEBUG="1"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["dev", "pk_test_dev", "whsec_dev_"]
    with_key = run_python(code, clean_env(DJANGO_DEBUG="1", STRIPE_SECRET_KEY="sk_test_x"))
    assert with_key.stdout.split()[0] == "stripe"


def test_the_gateway_is_refused_at_runtime_in_production(settings: Any) -> None:
    settings.PRODUCTION = True
    with pytest.raises(ImproperlyConfigured):
        gateways.get_gateway()


def test_check_deploy_reports_the_dev_gateway() -> None:
    assert "billing.E006" in {problem.id for problem in stripe_configured()}


def test_dev_pay_is_refused_on_stripe(settings: Any, client_user: User, therapist: User) -> None:
    settings.BILLING_GATEWAY = "stripe"
    with pytest.raises(CommandError, match="development gateway"):
        call_command(
            "dev_pay", booking="00000000-0000-0000-0000-000000000000", stdout=io.StringIO()
        )


# --- the README journey over HTTP -----------------------------------------------------------


def test_book_pay_confirm_cancel_refund_over_http(client_user: User, therapist: User) -> None:
    profile = make_therapist(user=therapist, now=timezone.now())
    session_type = SessionType.objects.get(therapist=profile)
    api = api_client_for(client_user, mfa=False)
    now = timezone.now()
    slots = api.get(
        f"/api/v1/therapists/{profile.pk}/slots",
        {
            "session_type": str(session_type.pk),
            "start": (now + timedelta(days=3)).isoformat(),
            "end": (now + timedelta(days=10)).isoformat(),
        },
    )
    assert slots.status_code == 200, slots.content
    booked = api.post(
        "/api/v1/bookings/",
        {
            "therapist": str(profile.pk),
            "session_type": str(session_type.pk),
            "start": slots.json()["slots"][0]["start"],
            "jurisdiction": "US-NY",
        },
        format="json",
    )
    assert booked.status_code == 201, booked.content
    booking_id = booked.json()["id"]
    assert booked.json()["status"] == "held"

    paid = api.post(f"/api/v1/bookings/{booking_id}/pay", {}, format="json")
    assert paid.status_code in (200, 201), paid.content
    sheet = paid.json()
    assert sheet["publishable_key"] == DEV_PK
    assert sheet["client_secret"].startswith(sheet["payment_intent_id"] + "_secret_")
    assert sheet["customer_id"].startswith("cus_dev_")

    out = io.StringIO()
    call_command("dev_pay", booking=booking_id, card=VISA, stdout=out)
    assert json.loads(out.getvalue())["booking_status"] == "confirmed"
    detail = api.get(f"/api/v1/bookings/{booking_id}").json()
    assert (detail["status"], detail["payment"]["state"]) == ("confirmed", "succeeded")

    cancelled = api.post(
        f"/api/v1/bookings/{booking_id}/cancel", {"reason": "other"}, format="json"
    )
    assert cancelled.status_code == 200, cancelled.content
    call_command("billing_settle", stdout=io.StringIO())
    listed = api.get("/api/v1/billing/payments", {"booking": booking_id}).json()["results"]
    assert [p["state"] for p in listed] == ["refund_pending"]

    call_command("dev_gateway_deliver", stdout=io.StringIO())
    listed = api.get("/api/v1/billing/payments", {"booking": booking_id}).json()["results"]
    assert [p["state"] for p in listed] == ["refunded"]
