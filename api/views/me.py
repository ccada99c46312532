"""The signed-in account: ``/api/v1/me`` and ``/api/v1/me/password``."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.authentication import family_of, user_of
from api.models import Role
from api.permissions import IsAuthenticatedAnyFactor
from api.serializers import StrictInputSerializer, problem_responses
from api.services import users
from api.views.auth import password_field

TAGS = ["account"]


class MeSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    email = serializers.EmailField()
    full_name = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices)
    mfa_enabled = serializers.BooleanField()
    date_joined = serializers.DateTimeField()


class MeUpdateSerializer(StrictInputSerializer):
    """Only the name: role, email and the rest are refused as unknown fields."""

    full_name = serializers.CharField(max_length=150, required=False)


class PasswordChangeSerializer(StrictInputSerializer):
    current_password = password_field()
    new_password = password_field()


class MeView(APIView):
    # Any factor: staff who still have to enrol a second factor can see their account.
    permission_classes = [IsAuthenticatedAnyFactor]

    @extend_schema(
        tags=TAGS,
        summary="The signed-in account",
        responses={200: MeSerializer, **problem_responses(401)},
    )
    def get(self, request: Request) -> Response:
        return Response(MeSerializer(user_of(request)).data)

    @extend_schema(
        tags=TAGS,
        summary="Change the account's name",
        description="Only full_name can change here; any other field is refused (400).",
        request=MeUpdateSerializer,
        responses={200: MeSerializer, **problem_responses(400, 401)},
    )
    def patch(self, request: Request) -> Response:
        data = MeUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        user = user_of(request)
        if "full_name" in data.validated_data:
            user = users.user_profile_update(
                user=user, full_name=data.validated_data["full_name"], request=request
            )
        return Response(MeSerializer(user).data)


class PasswordChangeView(APIView):
    @extend_schema(
        tags=TAGS,
        summary="Change the password",
        description=(
            "Needs the current password. Every other session of the account ends; this one "
            "stays signed in with its tokens. Refusals: 400 invalid_current_password or "
            "validation_error (incl. the password policy), 429 too_many_failures (wrong "
            "current passwords count towards the sign-in back-off)."
        ),
        request=PasswordChangeSerializer,
        responses={204: None, **problem_responses(400, 401, 403, 429)},
    )
    def post(self, request: Request) -> Response:
        data = PasswordChangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        users.user_password_change(
            user=user_of(request),
            current_password=data.validated_data["current_password"],
            new_password=data.validated_data["new_password"],
            keep_family_id=family_of(request),
            request=request,
            now=timezone.now(),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
