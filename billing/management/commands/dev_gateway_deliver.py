"""``manage.py dev_gateway_deliver``: deliver the development gateway's pending events.

Events are normally delivered right after the transaction that caused them commits; this sends
any left pending (a failed delivery, or ``BILLING_DEV_EVENTS_AFTER_COMMIT=0``). Safe to run
twice or on two processes: each event is claimed before it is sent, and applied once.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from billing.services.dev_events import DevGatewayNotSelected, dev_events_deliver, dev_gateway


class Command(BaseCommand):
    help = "Deliver the development payment gateway's pending webhook events."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            dev_gateway()
        except DevGatewayNotSelected as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps({"delivered": dev_events_deliver()}))
