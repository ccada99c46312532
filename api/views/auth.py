"""Sign-in, token refresh, logout, registration and password reset: ``/api/v1/auth/``.

Tokens travel only in JSON bodies and the ``Authorization`` header, never in a URL.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.authentication import family_of, user_of
from api.idempotency import idempotent
from api.models import User
from api.permissions import IsAuthenticatedAnyFactor
from api.serializers import StrictInputSerializer, problem_responses
from api.services import auth, users
from api.services.sessions import TokenPair

TAGS = ["auth"]


def password_field(**kwargs: Any) -> serializers.CharField:
    """A password exactly as typed: no trimming, at most ``PASSWORD_MAX_LENGTH`` characters."""
    return serializers.CharField(
        max_length=settings.PASSWORD_MAX_LENGTH,
        trim_whitespace=False,
        write_only=True,
        style={"input_type": "password"},
        **kwargs,
    )


class RegisterSerializer(StrictInputSerializer):
    email = serializers.EmailField(max_length=254)
    password = password_field()
    full_name = serializers.CharField(max_length=150)


class AcceptedSerializer(serializers.Serializer):
    detail = serializers.CharField()


class SignInSerializer(StrictInputSerializer):
    email = serializers.EmailField(max_length=254)
    password = password_field()


@extend_schema_field({"type": "boolean", "enum": [False]})
class FalseField(serializers.BooleanField):
    """Always false: a literal type, so generated clients can narrow a union on it."""


@extend_schema_field({"type": "boolean", "enum": [True]})
class TrueField(serializers.BooleanField):
    """Always true: a literal type, so generated clients can narrow a union on it."""


class SignInTokensSerializer(serializers.Serializer):
    mfa_required = FalseField(help_text="Always false here: signed in.")
    access = serializers.CharField()
    refresh = serializers.CharField()
    token_type = serializers.CharField()
    expires_in = serializers.IntegerField(help_text="Seconds until the access token expires.")
    mfa_enrolment_required = serializers.BooleanField(
        help_text="A staff account without a second factor: until it enrols, its token is "
        "accepted only by /me, the MFA endpoints and logout."
    )


class MfaChallengeSerializer(serializers.Serializer):
    mfa_required = TrueField(help_text="Always true here.")
    mfa_token = serializers.CharField(help_text="Send it with a code to POST /auth/mfa/verify.")
    expires_in = serializers.IntegerField(help_text="Seconds until the mfa_token expires.")


class RefreshSerializer(StrictInputSerializer):
    refresh = serializers.CharField()


class PasswordResetSerializer(StrictInputSerializer):
    email = serializers.EmailField(max_length=254)


class PasswordResetConfirmSerializer(StrictInputSerializer):
    uid = serializers.CharField(max_length=64)
    token = serializers.CharField(max_length=128)
    new_password = password_field()


def _tokens_body(pair: TokenPair, *, user: User) -> dict[str, Any]:
    return SignInTokensSerializer(
        {
            "mfa_required": False,
            "access": pair.access,
            "refresh": pair.refresh,
            "token_type": "Bearer",
            "expires_in": pair.access_expires_in,
            "mfa_enrolment_required": user.is_staff_role and not user.mfa_enabled,
        }
    ).data


def _valid(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


REGISTER_ACCEPTED = (
    "If this address can be registered, the account is ready and an email is on its way."
)
RESET_ACCEPTED = "If this address has an account, a password reset email is on its way."


class RegisterView(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(
        tags=TAGS,
        summary="Create a client account",
        description=(
            "Clients only (staff accounts are created by an operator). The answer is the same "
            "202 whether or not the address already has an account; its owner is told by email. "
            "Refusals: 400 validation_error (incl. the password policy), 429 rate_limited."
        ),
        request=RegisterSerializer,
        responses={202: AcceptedSerializer, **problem_responses(400, 409, 422, 429)},
        auth=[],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = _valid(RegisterSerializer, request)
        users.user_register(**data, request=request, now=timezone.now())
        return Response({"detail": REGISTER_ACCEPTED}, status=status.HTTP_202_ACCEPTED)


class TokenView(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(
        tags=TAGS,
        summary="Sign in with email and password",
        description=(
            "An account with a second factor gets an mfa_token for POST /auth/mfa/verify; "
            "others get tokens. Refusals: 401 invalid_credentials (the same for an unknown "
            "email and a wrong password), 429 too_many_failures (the account's back-off, with "
            "Retry-After; it ends by itself) or rate_limited (per IP)."
        ),
        request=SignInSerializer,
        responses={
            200: PolymorphicProxySerializer(
                component_name="SignInResult",
                # mfa_required tells the two apart (TypeScript narrows on it).
                serializers={"false": SignInTokensSerializer, "true": MfaChallengeSerializer},
                resource_type_field_name="mfa_required",
            ),
            **problem_responses(400, 401, 429),
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = _valid(SignInSerializer, request)
        result = auth.login_attempt(**data, request=request, now=timezone.now())
        if isinstance(result, auth.MfaRequired):
            body = {
                "mfa_required": True,
                "mfa_token": result.mfa_token,
                "expires_in": settings.JWT_MFA_PENDING_TTL_SECONDS,
            }
            return Response(MfaChallengeSerializer(body).data)
        return Response(_tokens_body(result.tokens, user=result.user))


class TokenRefreshView(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(
        tags=TAGS,
        summary="Exchange a refresh token for a new pair (rotation)",
        description=(
            "Each refresh token works once. Presenting one that was already exchanged ends the "
            "whole sign-in (every token it produced). Refusals: 401 invalid_token, "
            "429 rate_limited."
        ),
        request=RefreshSerializer,
        responses={200: SignInTokensSerializer, **problem_responses(400, 401, 429)},
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = _valid(RefreshSerializer, request)
        result = auth.session_refresh(
            refresh_token=data["refresh"], request=request, now=timezone.now()
        )
        return Response(_tokens_body(result.tokens, user=result.user))


class LogoutView(APIView):
    permission_classes = [IsAuthenticatedAnyFactor]

    @extend_schema(
        tags=TAGS,
        summary="Sign out this session",
        description="Its refresh token and access tokens stop working at once.",
        request=None,
        responses={204: None, **problem_responses(401)},
    )
    def post(self, request: Request) -> Response:
        auth.session_logout(
            user=user_of(request),
            family_id=family_of(request),
            request=request,
            now=timezone.now(),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class LogoutAllView(APIView):
    permission_classes = [IsAuthenticatedAnyFactor]

    @extend_schema(
        tags=TAGS,
        summary="Sign out everywhere",
        description="Every session of the account ends, this one included.",
        request=None,
        responses={204: None, **problem_responses(401)},
    )
    def post(self, request: Request) -> Response:
        auth.session_logout_all(user=user_of(request), request=request, now=timezone.now())
        return Response(status=status.HTTP_204_NO_CONTENT)


class PasswordResetView(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(
        tags=TAGS,
        summary="Ask for a password reset email",
        description=(
            "The same 202 for any address. Refusals: 400 validation_error, 429 rate_limited."
        ),
        request=PasswordResetSerializer,
        responses={202: AcceptedSerializer, **problem_responses(400, 429)},
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = _valid(PasswordResetSerializer, request)
        users.user_password_reset_request(**data, request=request, now=timezone.now())
        return Response({"detail": RESET_ACCEPTED}, status=status.HTTP_202_ACCEPTED)


class PasswordResetConfirmView(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(
        tags=TAGS,
        summary="Set a new password with the emailed uid and token",
        description=(
            "Every session of the account ends; a second factor stays required. Refusals: "
            "400 invalid_reset_token or validation_error (incl. the password policy), "
            "429 rate_limited."
        ),
        request=PasswordResetConfirmSerializer,
        responses={204: None, **problem_responses(400, 429)},
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = _valid(PasswordResetConfirmSerializer, request)
        users.user_password_reset_confirm(**data, request=request, now=timezone.now())
        return Response(status=status.HTTP_204_NO_CONTENT)
