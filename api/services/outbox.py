"""Claiming outbox rows: one conditional UPDATE decides which sender owns which rows.

An outbox model has ``claimed_until`` (the lease), ``claim_token`` and ``attempts``. A sender
claims rows that nobody holds (or whose lease ran out) by stamping its own token on them in one
``UPDATE``, then works on exactly the rows that carry its token: two senders, or one on each of
two machines, never both take a row, and a sender that crashed or failed gives its rows back
when the lease runs out (``docs/concurrency.md``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from django.db.models import F, Model, Q

CLAIM_LEASE = timedelta(minutes=5)


def outbox_claim(
    model: type[Model], *, unsent: Q, now: datetime, scope: Q | None = None, limit: int = 500
) -> Q | None:
    """Claim up to ``limit`` unsent rows of ``model`` (oldest first), or exactly those in
    ``scope``; the filter of the rows this caller won, or None when it won none."""
    claimable = unsent & (Q(claimed_until__isnull=True) | Q(claimed_until__lte=now))
    manager: Any = model._default_manager
    if scope is None:
        ids = list(manager.filter(claimable).order_by("pk").values_list("pk", flat=True)[:limit])
        if not ids:
            return None
        scope = Q(pk__in=ids)
    token = uuid.uuid4()
    claimed = manager.filter(claimable, scope).update(
        claimed_until=now + CLAIM_LEASE, claim_token=token, attempts=F("attempts") + 1
    )
    return scope & Q(claim_token=token) if claimed else None


def outbox_drain(deliver: Callable[[int], Any], *, batch: int = 500) -> dict[str, int]:
    """Call ``deliver(limit)`` (it returns a dataclass of counts) until a call handles fewer than
    ``batch`` rows (the job's whole backlog); the counts summed over the calls."""
    totals: dict[str, int] = {}
    while True:
        counts = asdict(deliver(batch))
        for name, count in counts.items():
            totals[name] = totals.get(name, 0) + count
        if sum(counts.values()) < batch:
            return totals
