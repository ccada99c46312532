"""Brute-force limits counted atomically in the cache, and the one way to read a client's IP.

DRF's throttles read a list from the cache, append and write it back: parallel requests can all
read the same old list and all pass. Here every hit is one atomic ``incr`` on a counter
(``cache.add`` creates it; Redis ``INCR``, or the local-memory cache under its lock, counts it),
so N parallel hits always count N.

Counters use fixed windows: the key names the window (``now // window_seconds``), so a window
ends by itself and nothing has to be reset. Keys hold a keyed hash of the counted value (an IP
address, an email), never the value.

Public API, also used by the MFA step:

- ``client_ip(request)``: the caller's address; every limit and audit row reads it from here.
- ``rate_limit_ip(request=..., scope=..., limit=..., window_seconds=..., now=...)``: count one
  attempt from the caller's IP under ``scope`` and raise ``RateLimited`` (429, ``Retry-After``)
  past ``limit`` attempts in the window; the first refusal of a window is audited.
- ``rate_limit_hit(scope=..., key=..., ...)``: the same for any other key (an account, an email).
- ``counter_incr(scope=..., key=..., window_seconds=..., now=...)``: count and return the total.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from functools import lru_cache

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from api import crypto
from api.auditing import Outcome, audit_event_record
from api.errors import TooManyRequestsError


class RateLimited(TooManyRequestsError):
    """429 for a limit reached. ``first`` is true for the first refusal of the window only, so
    a caller can audit that one refusal rather than every retry of a flood."""

    code = "rate_limited"

    def __init__(self, *, retry_after: int, first: bool):
        super().__init__("Too many requests. Retry later.", retry_after=retry_after)
        self.first = first


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse_ip(value: object) -> IPAddress | None:
    """An address from ``REMOTE_ADDR`` or one ``X-Forwarded-For`` hop (a port is dropped)."""
    text = str(value or "").strip()
    if text.startswith("["):  # [v6]:port
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


@lru_cache(maxsize=8)
def _trusted_networks(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def client_ip(request: HttpRequest) -> str:
    """The address of the party that sent ``request`` (the only place that decides it).

    ``REMOTE_ADDR`` is the peer. Only when the peer is one of ``settings.TRUSTED_PROXIES`` (IPs or
    CIDRs) is ``X-Forwarded-For`` read, right to left, passing over trusted proxies: the first
    address that is not one is the client's. Whatever a client writes into the header further
    left is never read, so it cannot choose the address recorded or rate-limited (AUD-06).
    """
    peer = _parse_ip(request.META.get("REMOTE_ADDR"))
    if peer is None:
        return "unknown"
    trusted = _trusted_networks(tuple(settings.TRUSTED_PROXIES))
    client = peer
    hops = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    while any(client in network for network in trusted) and hops:
        hop = _parse_ip(hops.pop())
        if hop is None:  # a malformed hop: the last trusted proxy is the best we know
            break
        client = hop
    return str(client)


def _window(window_seconds: int, now: datetime) -> tuple[int, int]:
    """The index of the window holding ``now`` and the seconds left until it ends (≥ 1)."""
    ts = int(now.timestamp())
    return ts // window_seconds, window_seconds - ts % window_seconds


def counter_incr(*, scope: str, key: str, window_seconds: int, now: datetime) -> int:
    """Add one to the (scope, key) counter of the window holding ``now``; return the new total."""
    index, _ = _window(window_seconds, now)
    cache_key = f"rl:{scope}:{index}:{crypto.keyed_hash(key, purpose='ratelimit')}"
    ttl = window_seconds + 1
    if cache.add(cache_key, 1, timeout=ttl):
        return 1
    try:
        return int(cache.incr(cache_key))
    except ValueError:  # the entry expired between add() and incr(): a new window's first hit
        cache.add(cache_key, 1, timeout=ttl)
        return 1


def rate_limit_hit(*, scope: str, key: str, limit: int, window_seconds: int, now: datetime) -> None:
    """Count one attempt; past ``limit`` attempts in the window raise ``RateLimited``."""
    count = counter_incr(scope=scope, key=key, window_seconds=window_seconds, now=now)
    if count > limit:
        _, retry_after = _window(window_seconds, now)
        raise RateLimited(retry_after=retry_after, first=count == limit + 1)


def rate_limit_ip(
    *, request: HttpRequest, scope: str, limit: int, window_seconds: int, now: datetime
) -> None:
    """``rate_limit_hit`` keyed by ``client_ip(request)``; the first refusal of a window is
    audited (``auth.rate_limited``). Call it outside a transaction, before any other work."""
    try:
        rate_limit_hit(
            scope=f"{scope}:ip",
            key=client_ip(request),
            limit=limit,
            window_seconds=window_seconds,
            now=now,
        )
    except RateLimited as exc:
        if exc.first:
            audit_event_record(
                action="auth.rate_limited",
                outcome=Outcome.DENIED,
                request=request,
                details={"scope": scope, "limit": limit, "window_seconds": window_seconds},
            )
        raise
