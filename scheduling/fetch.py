"""Fetching a calendar URL without becoming a proxy into our own network (SSRF).

Only ``http``/``https`` (and ``webcal``, read as https); the host is resolved once and every
address it resolves to must be public, unless it is inside a network listed in
``CALENDAR_FETCH_ALLOWED_NETWORKS`` (tests allow 127.0.0.1 there). The connection goes to the
address that was checked (no second lookup to rebind), with timeouts, no redirects, no
compression, and a size cap enforced while reading.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

_PORTS = {"http": 80, "https": 443}


class FetchError(Exception):
    """The calendar could not be fetched; ``code`` is stored on the calendar (no URL in it)."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str


def parse_url(url: str) -> Target:
    """Validate the shape of a calendar URL (no network): scheme, host, no credentials."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise FetchError("url_invalid") from exc
    scheme = "https" if parts.scheme.lower() == "webcal" else parts.scheme.lower()
    if scheme not in _PORTS:
        raise FetchError("url_scheme_not_allowed")
    if not parts.hostname or parts.username or parts.password:
        raise FetchError("url_invalid")
    path = urlunsplit(("", "", parts.path or "/", parts.query, ""))
    return Target(scheme, parts.hostname, port or _PORTS[scheme], path)


def _allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    for network in settings.CALENDAR_FETCH_ALLOWED_NETWORKS:
        if address in ipaddress.ip_network(network, strict=False):
            return True
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def resolve(target: Target) -> str:
    """The one address to connect to; every address the name resolves to must be allowed."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError("host_not_found") from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses or not all(_allowed(a) for a in addresses):
        raise FetchError("address_not_allowed")
    return str(addresses[0])


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, *, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, *, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def fetch(url: str, *, max_bytes: int, timeout: float) -> bytes:
    """GET ``url`` and return its body (at most ``max_bytes``), or raise ``FetchError``."""
    target = parse_url(url)
    address = resolve(target)
    cls = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    connection = cls(target.host, target.port, address=address, timeout=timeout)
    deadline = time.monotonic() + timeout
    try:
        connection.request(
            "GET",
            target.path,
            headers={
                "Accept": "text/calendar",
                "Accept-Encoding": "identity",
                "User-Agent": "telehealth-calendar-sync",
            },
        )
        response = connection.getresponse()
        if response.status != 200:
            raise FetchError(f"http_{response.status}")
        length = response.getheader("Content-Length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            raise FetchError("too_large")
        chunks: list[bytes] = []
        size = 0
        while chunk := response.read(64 * 1024):
            size += len(chunk)
            if size > max_bytes:
                raise FetchError("too_large")
            if time.monotonic() > deadline:
                raise FetchError("timeout")
            chunks.append(chunk)
        return b"".join(chunks)
    except TimeoutError as exc:
        raise FetchError("timeout") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise FetchError("connection_failed") from exc
    finally:
        connection.close()
