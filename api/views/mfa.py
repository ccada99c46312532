"""Second factor endpoints under ``/api/v1/auth/mfa/``.

Account management (status, enrolment, backup codes, removal) accepts a password-only token
(``IsAuthenticatedAnyFactor``), so staff who must enrol can. ``verify`` is the anonymous second
step of sign-in: it takes the ``mfa_token`` of the password step, never a Bearer token.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.authentication import claims_of, family_of, user_of
from api.permissions import IsAuthenticatedAnyFactor
from api.serializers import StrictInputSerializer, problem_responses
from api.services import mfa
from api.views.auth import SignInTokensSerializer, password_field

TAGS = ["auth: second factor"]


def _code_shape(value: str) -> None:
    if mfa.mfa_code_parse(value) is None:
        raise serializers.ValidationError(
            "Enter the 6-digit code from the authenticator app or a backup code.",
            code="invalid_code",
        )


# What ``mfa_code_parse`` accepts (surrounding whitespace aside): a TOTP or a backup code.
MFA_CODE_PATTERN = r"^(?:[0-9]{6}|[A-Za-z2-7]{5}-?[A-Za-z2-7]{5})$"


@extend_schema_field({"type": "string", "maxLength": 11, "pattern": MFA_CODE_PATTERN})
class MfaCodeField(serializers.CharField):
    """A 6-digit TOTP code or a backup code (``abcde-fghij``, any case, hyphen optional)."""


def _code_field(**kwargs: Any) -> serializers.CharField:
    return MfaCodeField(max_length=32, validators=[_code_shape], **kwargs)


class MfaStatusSerializer(serializers.Serializer):
    enrolled = serializers.BooleanField(help_text="A confirmed authenticator app is enrolled.")
    required_by_role = serializers.BooleanField(help_text="This role must use a second factor.")
    confirmed_at = serializers.DateTimeField(allow_null=True)
    backup_codes_remaining = serializers.IntegerField(min_value=0)


class TotpBeginInputSerializer(StrictInputSerializer):
    password = password_field()
    code = _code_field(
        required=False,
        help_text="A code of the current device: needed to replace an enrolled one.",
    )


class TotpEnrolmentSerializer(serializers.Serializer):
    otpauth_uri = serializers.CharField(help_text="Shown this once: render it as a QR code.")
    secret = serializers.CharField(help_text="The same secret in base32, for manual entry.")


class CodeInputSerializer(StrictInputSerializer):
    code = _code_field()


class PasswordCodeInputSerializer(StrictInputSerializer):
    password = password_field()
    code = _code_field()


class BackupCodesOutSerializer(serializers.Serializer):
    backup_codes = serializers.ListField(
        child=serializers.CharField(), help_text="Single-use codes, shown this once."
    )


class VerifyInputSerializer(StrictInputSerializer):
    mfa_token = serializers.CharField(max_length=settings.JWT_MAX_TOKEN_BYTES)
    code = _code_field()


def _auth_time(request: Request) -> int:
    """When the caller signed in (the access token's ``auth_time``)."""
    claims = claims_of(request)
    if claims is None:
        raise NotAuthenticated()
    return claims.auth_time


class MfaStatusView(APIView):
    permission_classes = [IsAuthenticatedAnyFactor]

    @extend_schema(
        tags=TAGS,
        summary="Second-factor state of the signed-in user",
        responses={200: MfaStatusSerializer, **problem_responses(401)},
    )
    def get(self, request: Request) -> Response:
        return Response(MfaStatusSerializer(mfa.mfa_status(user=user_of(request))).data)


class TotpBeginView(APIView):
    permission_classes = [IsAuthenticatedAnyFactor]

    @extend_schema(
        tags=TAGS,
        summary="Begin TOTP enrolment (or re-enrolment)",
        description=(
            "Needs the password and a sign-in within REAUTH_MAX_AGE_SECONDS; an enrolled user "
            "also gives a code of the current device. Returns the provisioning URI and secret "
            "this one time; the device is pending until confirmed with its first code. "
            "Refusals: 403 password_invalid, reauthentication_required, mfa_code_required, "
            "mfa_code_invalid; 429 mfa_throttled, rate_limited, too_many_failures."
        ),
        request=TotpBeginInputSerializer,
        responses={200: TotpEnrolmentSerializer, **problem_responses(400, 401, 403, 429)},
    )
    def post(self, request: Request) -> Response:
        data = TotpBeginInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        enrolment = mfa.mfa_totp_begin(
            user=user_of(request),
            password=data.validated_data["password"],
            code=data.validated_data.get("code"),
            auth_time=_auth_time(request),
            now=timezone.now(),
            request=request,
        )
        return Response(TotpEnrolmentSerializer(enrolment).data)


class TotpConfirmView(APIView):
    permission_classes = [IsAuthenticatedAnyFactor]

    @extend_schema(
        tags=TAGS,
        summary="Confirm TOTP enrolment with the first code",
        description=(
            "Turns the second factor on, replaces any older device, returns 10 backup codes "
            "this one time, and ends the user's other sessions. Refusals: 403 "
            "reauthentication_required, mfa_code_invalid; 409 mfa_enrolment_not_started; "
            "429 mfa_throttled, rate_limited."
        ),
        request=CodeInputSerializer,
        responses={200: BackupCodesOutSerializer, **problem_responses(400, 401, 403, 409, 429)},
    )
    def post(self, request: Request) -> Response:
        data = CodeInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        codes = mfa.mfa_totp_confirm(
            user=user_of(request),
            code=data.validated_data["code"],
            auth_time=_auth_time(request),
            keep_family_id=family_of(request),
            now=timezone.now(),
            request=request,
        )
        return Response(BackupCodesOutSerializer({"backup_codes": codes}).data)


class BackupCodesView(APIView):
    permission_classes = [IsAuthenticatedAnyFactor]

    @extend_schema(
        tags=TAGS,
        summary="Replace the backup codes",
        description=(
            "Needs the password and a current code; every earlier backup code stops working. "
            "Refusals: 403 password_invalid, mfa_code_invalid; 409 mfa_not_enrolled; "
            "429 mfa_throttled, rate_limited, too_many_failures."
        ),
        request=PasswordCodeInputSerializer,
        responses={200: BackupCodesOutSerializer, **problem_responses(400, 401, 403, 409, 429)},
    )
    def post(self, request: Request) -> Response:
        data = PasswordCodeInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        codes = mfa.mfa_backup_codes_regenerate(
            user=user_of(request),
            password=data.validated_data["password"],
            code=data.validated_data["code"],
            now=timezone.now(),
            request=request,
        )
        return Response(BackupCodesOutSerializer({"backup_codes": codes}).data)


class DisableView(APIView):
    permission_classes = [IsAuthenticatedAnyFactor]

    @extend_schema(
        tags=TAGS,
        summary="Turn the second factor off (clients only)",
        description=(
            "Needs the password, a current code and a recent sign-in. Staff roles must keep "
            "their second factor. Ends the user's other sessions. Refusals: 403 "
            "mfa_required_for_role, reauthentication_required, password_invalid, "
            "mfa_code_invalid; 409 mfa_not_enrolled; 429 mfa_throttled, rate_limited, "
            "too_many_failures."
        ),
        request=PasswordCodeInputSerializer,
        responses={204: None, **problem_responses(400, 401, 403, 409, 429)},
    )
    def post(self, request: Request) -> Response:
        data = PasswordCodeInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        mfa.mfa_disable(
            user=user_of(request),
            password=data.validated_data["password"],
            code=data.validated_data["code"],
            auth_time=_auth_time(request),
            keep_family_id=family_of(request),
            now=timezone.now(),
            request=request,
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class VerifyView(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(
        tags=TAGS,
        summary="Second step of sign-in: the code for an mfa_token",
        description=(
            "Takes the mfa_token of POST /api/v1/auth/token and a TOTP or backup code; answers "
            "like the password step, with tokens whose amr includes otp and mfa. Refusals: "
            "401 invalid_token (sign in again), mfa_code_invalid; 429 mfa_throttled, "
            "rate_limited."
        ),
        request=VerifyInputSerializer,
        responses={200: SignInTokensSerializer, **problem_responses(400, 401, 429)},
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = VerifyInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        pair = mfa.mfa_verify(
            mfa_token=data.validated_data["mfa_token"],
            code=data.validated_data["code"],
            now=timezone.now(),
            request=request,
        )
        body = {
            "mfa_required": False,
            "access": pair.access,
            "refresh": pair.refresh,
            "token_type": "Bearer",
            "expires_in": pair.access_expires_in,
            "mfa_enrolment_required": False,
        }
        return Response(SignInTokensSerializer(body).data)
