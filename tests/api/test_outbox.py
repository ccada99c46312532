"""Claiming outbox rows (``api.services.outbox``), shown on the plain-email outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from django.db.models import Q

from api.models import OutboundEmail
from api.services.outbox import CLAIM_LEASE, outbox_claim, outbox_drain

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _rows(count: int) -> list[int]:
    rows = OutboundEmail.objects.bulk_create(
        OutboundEmail(to=f"p{n}@example.test", subject="S", body="x", created_at=NOW)
        for n in range(count)
    )
    return [row.pk for row in rows]


def test_a_claim_takes_the_oldest_rows_up_to_its_limit_and_counts_the_attempt():
    ids = _rows(3)
    won = outbox_claim(OutboundEmail, unsent=Q(), now=NOW, limit=2)
    assert won is not None
    assert list(OutboundEmail.objects.filter(won).values_list("pk", flat=True)) == ids[:2]
    assert list(OutboundEmail.objects.order_by("pk").values_list("attempts", flat=True)) == [
        1,
        1,
        0,
    ]


def test_a_claimed_row_is_nobody_elses_until_its_lease_runs_out():
    (pk,) = _rows(1)
    assert outbox_claim(OutboundEmail, unsent=Q(), now=NOW, scope=Q(pk=pk)) is not None
    assert outbox_claim(OutboundEmail, unsent=Q(), now=NOW + CLAIM_LEASE / 2) is None
    again = outbox_claim(OutboundEmail, unsent=Q(), now=NOW + CLAIM_LEASE)
    assert again is not None
    assert OutboundEmail.objects.get(pk=pk).attempts == 2


def test_rows_outside_the_unsent_filter_are_never_claimed():
    _rows(2)
    assert outbox_claim(OutboundEmail, unsent=Q(subject="other"), now=NOW) is None


@dataclass
class Counts:
    sent: int
    failed: int


def test_drain_calls_until_a_call_handles_less_than_a_batch_and_sums_the_counts():
    calls = iter([Counts(2, 1), Counts(3, 0), Counts(1, 0), Counts(9, 9)])
    limits: list[int] = []

    def deliver(limit: int) -> Counts:
        limits.append(limit)
        return next(calls)

    assert outbox_drain(deliver, batch=3) == {"sent": 6, "failed": 1}
    assert limits == [3, 3, 3]
