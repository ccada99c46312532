"""DRF authentication with our access tokens (``Authorization: Bearer <jwt>``)."""

from __future__ import annotations

import uuid
from typing import Any

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated
from rest_framework.request import Request

from api import tokens
from api.models import TokenFamily, User


def access_token_user(raw: str) -> tuple[User, tokens.TokenClaims] | None:
    """The active user of an access token of a live family, with its claims; else None.

    For a bearer header here, and for sockets, which get their token in the first message."""
    try:
        claims = tokens.decode(raw, expected_typ=tokens.ACCESS, now=timezone.now())
        family_id, user_id = uuid.UUID(str(claims.fam)), uuid.UUID(claims.sub)
    except (tokens.TokenError, ValueError):
        return None
    family = (
        TokenFamily.objects.select_related("user")
        .filter(pk=family_id, user_id=user_id, revoked_at__isnull=True)
        .first()
    )
    if family is None or not family.user.is_active:
        return None
    return family.user, claims


class JWTAuthentication(BaseAuthentication):
    """Accepts only ``typ=access`` tokens of a live family whose user is active.

    Checking the family on every request (one query, which also loads the user) makes logout,
    reuse detection and deactivation take effect at once rather than when the token expires.
    """

    def authenticate(self, request: Request) -> tuple[User, tokens.TokenClaims] | None:
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != b"bearer":
            return None
        if len(header) != 2:
            raise AuthenticationFailed("Invalid authorization header.", code="invalid_token")
        try:
            raw = header[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise AuthenticationFailed("Invalid or expired token.", code="invalid_token") from exc
        found = access_token_user(raw)
        if found is None:
            raise AuthenticationFailed("Invalid or expired token.", code="invalid_token")
        return found

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class JWTAuthenticationScheme(OpenApiAuthenticationExtension):
    """Describes ``JWTAuthentication`` in the OpenAPI schema as an HTTP bearer scheme."""

    target_class = JWTAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}


def claims_of(request: Any) -> tokens.TokenClaims | None:
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, tokens.TokenClaims) else None


def family_of(request: Request) -> uuid.UUID:
    """The token family (the sign-in) of the access token a request was authenticated with."""
    claims = claims_of(request)
    if claims is None or not claims.fam:
        raise NotAuthenticated()
    return uuid.UUID(claims.fam)


def user_of(request: Request) -> User:
    """The signed-in user of a view whose permission requires authentication."""
    user = request.user
    if not isinstance(user, User):
        raise NotAuthenticated()
    return user
