"""``manage.py billing_reconcile``: our payments against Stripe's intents for a period.

Run against a scripted Stripe: localstripe refuses the ``created`` filter of the list call.
"""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from api.models import User
from billing import gateways
from billing.gateways.stripe import StripeGateway
from billing.models import Payment
from tests.billing.conftest import make_payment
from tests.billing.stripe_doubles import (
    Reply,
    payment_intent_object,
    scripted_stripe,
    stripe_error,
)
from tests.clock import clock_instant

# --fix confirms bookings at the test clock's time, so the holds must be live then.
DAY = clock_instant()
SINCE = DAY.date().isoformat()
UNTIL = (DAY.date() + timedelta(days=2)).isoformat()


def listing(*intents: dict) -> Reply:
    return Reply(200, {"object": "list", "data": list(intents), "has_more": False, "url": "/v1"})


@pytest.fixture
def payments(client_user: User, therapist: User) -> dict[str, Payment]:
    made = {}
    for n, (name, state, captured) in enumerate(
        [
            ("behind", "requires_payment_method", 0),
            ("same", "succeeded", 12000),
            ("gone", "canceled", 0),
        ]
    ):
        made[name] = make_payment(
            client=client_user,
            therapist=therapist,
            now=DAY + timedelta(minutes=n),
            state=state,
            captured_minor=captured,
            intent_id=f"pi_{name}",
        )
    make_payment(  # outside the period: not looked at
        client=client_user, therapist=therapist, now=DAY - timedelta(days=3), intent_id="pi_old"
    )
    return made


def stripe_replies(*, fix: bool) -> list[Reply]:
    behind = payment_intent_object(intent_id="pi_behind", status="succeeded", amount_received=12000)
    same = payment_intent_object(intent_id="pi_same", status="succeeded", amount_received=12000)
    stranger = payment_intent_object(
        intent_id="pi_stranger", status="succeeded", amount_received=500
    )
    replies = [listing(behind, same, stranger)]
    if fix:
        replies.append(Reply(200, behind))
    replies.append(Reply(404, stripe_error("invalid_request_error", "resource_missing")))
    return replies


def run(monkeypatch: pytest.MonkeyPatch, replies: list[Reply], *args: str) -> tuple[str, list]:
    out = StringIO()
    with scripted_stripe(replies) as server:
        monkeypatch.setattr(
            gateways,
            "get_gateway",
            lambda: StripeGateway(
                api_key="sk_test_x", webhook_secret="whsec_x", api_base=server.url, max_retries=0
            ),
        )
        try:
            call_command(
                "billing_reconcile",
                "--since",
                SINCE,
                "--until",
                UNTIL,
                *args,
                stdout=out,
            )
        finally:
            received = list(server.received)
    return out.getvalue(), received


def test_mismatches_are_reported_and_the_command_fails(
    monkeypatch: pytest.MonkeyPatch, payments: dict[str, Payment]
) -> None:
    with pytest.raises(CommandError) as failed:
        run(monkeypatch, stripe_replies(fix=False))
    assert failed.value.returncode == 1
    payments["behind"].refresh_from_db()
    assert payments["behind"].state == "requires_payment_method"  # reported, not changed


def test_the_report_names_each_mismatch(
    monkeypatch: pytest.MonkeyPatch, payments: dict[str, Payment]
) -> None:
    output, received = run(monkeypatch, stripe_replies(fix=True), "--fix")
    behind, gone = payments["behind"], payments["gone"]
    assert output.splitlines() == [
        f"state payment={behind.pk} intent=pi_behind ours=requires_payment_method/0/12000 "
        "stripe=succeeded/12000/12000",
        f"missing_at_stripe payment={gone.pk} intent=pi_gone ours=canceled/0/12000 stripe=-",
        "unknown_to_us payment=- intent=pi_stranger ours=- stripe=succeeded/500/12000",
        f"3 mismatch(es) from {SINCE} to {UNTIL}",
    ]
    assert "created[gte]" in received[0].path.replace("%5B", "[").replace("%5D", "]")
    behind.refresh_from_db()
    assert (behind.state, behind.amount_captured_minor) == ("succeeded", 12000)
    assert behind.history.get().reason == "refreshed"


def test_dates_are_checked(db: None) -> None:
    with pytest.raises(CommandError):
        call_command("billing_reconcile", "--since", "2026-03-05", "--until", "2026-03-01")
    with pytest.raises(CommandError):
        call_command("billing_reconcile", "--since", "March", "--until", "2026-03-01")
