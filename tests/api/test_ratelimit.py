"""The atomic rate limiter (api/services/ratelimit.py) and ``client_ip``.

The concurrency test runs against whichever cache the run is configured with: the local-memory
cache on SQLite runs, Redis when ``REDIS_URL`` is set (CI).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.test import RequestFactory

from api.services.ratelimit import (
    RateLimited,
    client_ip,
    counter_incr,
    rate_limit_hit,
    rate_limit_ip,
)
from audit.models import AuditEvent
from tests.concurrency import run_at_once

# 10:00:00 UTC exactly: the start of a minute window and of an hour window.
T0 = datetime(2030, 1, 7, 10, 0, 0, tzinfo=UTC)


def _hit(n: int, *, limit: int = 3, key: str = "k", scope: str = "s", now: datetime = T0):
    outcomes = []
    for _ in range(n):
        try:
            rate_limit_hit(scope=scope, key=key, limit=limit, window_seconds=60, now=now)
            outcomes.append("ok")
        except RateLimited as exc:
            outcomes.append(exc)
    return outcomes


def test_counter_counts_each_hit_in_its_window():
    assert [counter_incr(scope="s", key="k", window_seconds=60, now=T0) for _ in range(3)] == [
        1,
        2,
        3,
    ]
    # The next window starts again from one; the earlier one is untouched.
    assert counter_incr(scope="s", key="k", window_seconds=60, now=T0 + timedelta(seconds=60)) == 1
    assert counter_incr(scope="s", key="k", window_seconds=60, now=T0 + timedelta(seconds=59)) == 4


def test_limit_admits_exactly_limit_hits_then_429_with_retry_after():
    outcomes = _hit(5, limit=3, now=T0 + timedelta(seconds=45))
    assert outcomes[:3] == ["ok", "ok", "ok"]
    refused = outcomes[3:]
    assert all(isinstance(o, RateLimited) for o in refused)
    assert [o.retry_after for o in refused] == [15, 15]  # until the window ends at 10:01:00
    assert [o.first for o in refused] == [True, False]
    assert refused[0].status_code == 429
    assert refused[0].code == "rate_limited"


def test_a_window_ends_by_itself():
    assert isinstance(_hit(4)[-1], RateLimited)
    assert _hit(1, now=T0 + timedelta(minutes=1)) == ["ok"]


def test_scopes_and_keys_are_counted_apart():
    assert isinstance(_hit(4, key="a")[-1], RateLimited)
    assert _hit(1, key="b") == ["ok"]
    assert _hit(1, key="a", scope="other") == ["ok"]


def test_cache_keys_hold_no_ip_address_or_email():
    rate_limit_hit(scope="login:ip", key="203.0.113.9", limit=5, window_seconds=60, now=T0)
    rate_limit_hit(
        scope="reset:address", key="someone@example.test", limit=5, window_seconds=60, now=T0
    )
    store = cache._cache
    if isinstance(store, dict):  # local-memory cache
        keys = list(store)
    else:  # Redis
        keys = [k.decode() for k in store.get_client().keys("*")]
    assert keys
    assert not any("203.0.113.9" in k or "someone@example.test" in k for k in keys)


def test_lgn_03_parallel_hits_are_each_counted():
    """LGN-03: 40 parallel hits on a limit of 10 admit exactly 10 (no read-modify-write race)."""
    parallel, limit = 40, 10

    def hit(_: int) -> bool:
        try:
            rate_limit_hit(scope="race", key="k", limit=limit, window_seconds=60, now=T0)
        except RateLimited:
            return False
        return True

    admitted = run_at_once(hit, parallel)
    assert admitted.count(True) == limit
    assert counter_incr(scope="race", key="k", window_seconds=60, now=T0) == parallel + 1


def test_client_ip_is_the_peer_address():
    request = RequestFactory().get("/", REMOTE_ADDR="198.51.100.7")
    assert client_ip(request) == "198.51.100.7"


@pytest.mark.django_db
def test_rate_limit_ip_counts_per_address_and_audits_the_first_refusal_only():
    factory = RequestFactory()
    first = factory.post("/api/v1/auth/token", REMOTE_ADDR="198.51.100.7")
    other = factory.post("/api/v1/auth/token", REMOTE_ADDR="198.51.100.8")
    refusals = 0
    for _ in range(5):
        try:
            rate_limit_ip(request=first, scope="login", limit=2, window_seconds=60, now=T0)
        except RateLimited:
            refusals += 1
    assert refusals == 3
    rate_limit_ip(request=other, scope="login", limit=2, window_seconds=60, now=T0)

    events = list(AuditEvent.objects.filter(action="auth.rate_limited"))
    assert len(events) == 1
    assert events[0].outcome == "denied"
    assert events[0].source_ip == "198.51.100.7"
    assert events[0].details == {"scope": "login", "limit": 2, "window_seconds": 60}
