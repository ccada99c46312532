"""``manage.py billing_settle``: settle cancellations' fee requests and send pending refunds.

Safe to run every minute from cron or a worker, on several machines at once: fee requests are
claimed with a conditional update, and refunds carry their own idempotency keys.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from billing.services.lifecycle import billing_settle


class Command(BaseCommand):
    help = "Settle pending fee requests and send refunds that were left pending."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(json.dumps(billing_settle(now=timezone.now())))
