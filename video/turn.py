"""ICE servers for a join: STUN, and TURN with per-join TURN REST credentials (VID-08).

The TURN server (coturn with ``use-auth-secret`` and ``static-auth-secret``) shares one secret
with us and checks a credential without calling us: the username is ``"<expiry unix
time>:<random opaque id>"`` and the password ``base64(HMAC-SHA1(secret, username))``; coturn
refuses the pair once the expiry has passed. The id is random and names no one (no user id,
no email); the secret never leaves this module (not in a response, not in a log).

Behind a small interface (``IceServerProvider``), like billing's gateway: the join asks for
``ice_servers(expires_at=...)`` and gets RTCIceServer dictionaries; another TURN vendor (one
with an HTTP API for credentials) would be another provider.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime
from typing import Any, Protocol

from django.conf import settings


class IceServerProvider(Protocol):
    def ice_servers(self, *, expires_at: datetime) -> list[dict[str, Any]]:
        """RTCIceServer dictionaries (``urls``, and ``username``/``credential`` for TURN)."""
        ...


def turn_username(*, expires_at: datetime) -> str:
    """``"<expiry>:<16 random hex digits>"``: what coturn reads the expiry from."""
    return f"{int(expires_at.timestamp())}:{secrets.token_hex(8)}"


def turn_password(*, secret: str, username: str) -> str:
    """coturn's ``use-auth-secret`` password: base64 of HMAC-SHA1 over the username."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


class TurnRestProvider:
    """STUN and TURN URLs from settings; TURN REST credentials over a shared secret."""

    def __init__(self, *, stun_urls: list[str], turn_urls: list[str], secret: str) -> None:
        self._stun_urls = list(stun_urls)
        self._turn_urls = list(turn_urls)
        self._secret = secret

    def __repr__(self) -> str:  # never the secret, even in a traceback's locals
        return f"TurnRestProvider(stun={len(self._stun_urls)}, turn={len(self._turn_urls)})"

    def ice_servers(self, *, expires_at: datetime) -> list[dict[str, Any]]:
        servers: list[dict[str, Any]] = []
        if self._stun_urls:
            servers.append({"urls": list(self._stun_urls)})
        if self._turn_urls and self._secret:
            username = turn_username(expires_at=expires_at)
            servers.append(
                {
                    "urls": list(self._turn_urls),
                    "username": username,
                    "credential": turn_password(secret=self._secret, username=username),
                }
            )
        return servers


def get_provider() -> IceServerProvider:
    """The provider the settings describe (read at each call, so tests may override them)."""
    return TurnRestProvider(
        stun_urls=settings.VIDEO_STUN_URLS,
        turn_urls=settings.VIDEO_TURN_URLS,
        secret=settings.VIDEO_TURN_SECRET,
    )


def ice_servers(*, expires_at: datetime) -> list[dict[str, Any]]:
    """The ICE servers for one join, TURN credentials valid until ``expires_at``."""
    return get_provider().ice_servers(expires_at=expires_at)
