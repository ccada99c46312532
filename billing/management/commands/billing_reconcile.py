"""``manage.py billing_reconcile --since 2026-03-01 --until 2026-04-01 [--fix]``

Compares our payments created in the period with Stripe's PaymentIntents and prints one line per
mismatch (ids and states only), then a summary. Exits 1 when anything differs, so cron or CI
notices; ``--fix`` brings each differing payment to what Stripe says.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from billing.services.reconcile import payments_reconcile


def _day(value: str) -> datetime:
    try:
        return datetime.combine(date.fromisoformat(value), time.min, tzinfo=UTC)
    except ValueError as exc:
        raise CommandError(f"Not a date (YYYY-MM-DD): {value!r}") from exc


class Command(BaseCommand):
    help = "Compare local payments with Stripe for a date range (UTC) and report mismatches."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", required=True, help="first day, YYYY-MM-DD (UTC)")
        parser.add_argument("--until", required=True, help="day after the last, YYYY-MM-DD (UTC)")
        parser.add_argument("--fix", action="store_true", help="apply Stripe's state locally")

    def handle(self, *args: Any, **options: Any) -> None:
        start, end = _day(options["since"]), _day(options["until"])
        if end <= start:
            raise CommandError("--until must be after --since.")
        mismatches = payments_reconcile(
            start=start, end=end, fix=options["fix"], now=timezone.now()
        )
        for mismatch in mismatches:
            self.stdout.write(mismatch.line())
        self.stdout.write(f"{len(mismatches)} mismatch(es) from {start:%Y-%m-%d} to {end:%Y-%m-%d}")
        if mismatches and not options["fix"]:
            raise CommandError(f"{len(mismatches)} payment(s) differ from Stripe.", returncode=1)
