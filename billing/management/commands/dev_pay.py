"""``manage.py dev_pay``: pay with a test card on the development gateway, as the app would.

What Stripe.js or the mobile SDK does with the client secret ``/pay`` answers, without a
browser: the intent is confirmed with a test card, a 3-D Secure challenge is passed (or failed,
or left open), and the gateway's events go through the real webhook path. Development only:
refused unless billing is on the development gateway (``DJANGO_DEBUG=1``, no Stripe key).

    manage.py dev_pay --booking <id>                       # 4242 4242 4242 4242: paid
    manage.py dev_pay --booking <id> --card 4000000000000002    # declined
    manage.py dev_pay --booking <id> --card 4000002500003155 --3ds fail
    manage.py dev_pay --payment <id> --card 4000002760003184    # a fee waiting for 3-D Secure
    manage.py dev_pay --setup <id> --card 4242424242424242      # save a card (SetupIntent)
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.gateways.base import GatewayError
from billing.gateways.dev import TEST_CARDS
from billing.models import Payment, PaymentMethodSetup
from billing.services.dev_events import (
    DevGatewayNotSelected,
    dev_gateway,
    dev_payment_confirm,
    dev_setup_confirm,
)


class Command(BaseCommand):
    help = "Pay a booking (or a fee, or save a card) with a test card on the dev gateway."

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--booking", help="a booking id: its session payment (after /pay)")
        which.add_argument("--payment", help="a payment id (a fee waiting for 3-D Secure)")
        which.add_argument("--setup", help="a payment method setup id (saving a card)")
        parser.add_argument(
            "--card",
            default="4242424242424242",
            help=f"a test card number: {', '.join(TEST_CARDS)}",
        )
        parser.add_argument(
            "--3ds",
            dest="three_d_secure",
            choices=["approve", "fail", "leave"],
            default="approve",
            help="what the client does with a 3-D Secure challenge",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        card, three_d_secure = options["card"], options["three_d_secure"]
        try:
            dev_gateway()
            if options["setup"]:
                setup = PaymentMethodSetup.objects.filter(pk=_uuid(options["setup"])).first()
                if setup is None:
                    raise CommandError("No such payment method setup.")
                status = dev_setup_confirm(
                    setup=setup, card_number=card, three_d_secure=three_d_secure
                )
                setup.refresh_from_db()
                self.stdout.write(
                    json.dumps({"setup": str(setup.pk), "status": status, "state": setup.state})
                )
                return
            payment = self._payment(options["booking"], options["payment"])
            status = dev_payment_confirm(
                payment=payment, card_number=card, three_d_secure=three_d_secure
            )
        except DevGatewayNotSelected as exc:
            raise CommandError(str(exc)) from exc
        except GatewayError as exc:
            raise CommandError(f"{exc} ({exc.code})") from exc
        payment.refresh_from_db()
        booking = payment.booking
        self.stdout.write(
            json.dumps(
                {
                    "payment": str(payment.pk),
                    "intent_status": status,
                    "payment_state": payment.state,
                    "booking": str(booking.pk),
                    "booking_status": booking.status,
                }
            )
        )

    def _payment(self, booking_id: str | None, payment_id: str | None) -> Payment:
        payments = Payment.objects.all()
        if payment_id:
            payment = payments.filter(pk=_uuid(payment_id)).first()
        else:
            payment = (
                payments.filter(booking_id=_uuid(booking_id), purpose=Payment.Purpose.SESSION)
                .order_by("-version")
                .first()
            )
        if payment is None:
            raise CommandError("No such payment: start it with POST /bookings/{id}/pay first.")
        return payment


def _uuid(value: str | None) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise CommandError(f"Not an id: {value!r}.") from exc
