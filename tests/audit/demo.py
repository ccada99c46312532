"""A protected resource for the tests: client accounts (``api.User``) served by demo views.

No PHI app exists yet, so the mechanism is shown on the user record (names and emails are
personal data). The views are the two shapes later apps use: DRF generic views, and the house
style (selector / service + output serializer). ``ASSIGNMENTS`` says which clients each
therapist may see; tests fill it.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView, RetrieveAPIView, RetrieveUpdateDestroyAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import NotFoundError
from api.models import Role, User
from api.serializers import StrictInputSerializer
from audit.mixins import AuditedMixin
from audit.services import audit_access

RESOURCE = "api.user"
ASSIGNMENTS: dict[uuid.UUID, set[uuid.UUID]] = {}


def patient_of(user: User) -> uuid.UUID | None:
    return user.pk if user.role == Role.CLIENT else None


def clients_visible_to(user: User) -> QuerySet[User]:
    if user.role == Role.CLIENT:
        return User.objects.filter(pk=user.pk)
    return User.objects.filter(role=Role.CLIENT, pk__in=ASSIGNMENTS.get(user.pk, set()))


def client_get(*, user: User, pk: uuid.UUID) -> User:
    client = clients_visible_to(user).filter(pk=pk).first()
    if client is None:
        raise NotFoundError()
    return client


def client_rename(*, user: User, pk: uuid.UUID, full_name: str) -> User:
    with transaction.atomic():
        client = client_get(user=user, pk=pk)
        client.full_name = full_name
        client.save(update_fields=["full_name"])
        return client


def client_remove(*, user: User, pk: uuid.UUID) -> None:
    with transaction.atomic():
        client_get(user=user, pk=pk).delete()


class ClientOut(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = User
        fields = ["id", "full_name", "email"]


class ClientNameIn(StrictInputSerializer):
    full_name = serializers.CharField(max_length=150)


class ClientListApi(AuditedMixin, ListAPIView):  # type: ignore[type-arg]
    audit_resource = RESOURCE
    serializer_class = ClientOut

    def get_queryset(self) -> QuerySet[User]:
        return clients_visible_to(self.request.user).order_by("id")


class ClientDetailApi(AuditedMixin, RetrieveUpdateDestroyAPIView):  # type: ignore[type-arg]
    audit_resource = RESOURCE
    serializer_class = ClientOut

    def get_queryset(self) -> QuerySet[User]:
        return clients_visible_to(self.request.user)


class ClientCardApi(AuditedMixin, APIView):
    """House style: the view parses, calls a selector or service, renders."""

    audit_resource = RESOURCE

    @extend_schema(responses=ClientOut)
    def get(self, request: Request, pk: uuid.UUID) -> Response:
        return Response(ClientOut(client_get(user=request.user, pk=pk)).data)

    @extend_schema(request=ClientNameIn, responses=ClientOut)
    def patch(self, request: Request, pk: uuid.UUID) -> Response:
        data = ClientNameIn(data=request.data)
        data.is_valid(raise_exception=True)
        client = client_rename(user=request.user, pk=pk, full_name=data.validated_data["full_name"])
        return Response(ClientOut(client).data)

    def delete(self, request: Request, pk: uuid.UUID) -> Response:
        client_remove(user=request.user, pk=pk)
        return Response(status=204)


class ClientNoteApi(AuditedMixin, APIView):
    """A service reports what it touched itself (``audit_access``) and renders no model."""

    audit_resource = RESOURCE
    audit_models = (User,)  # rendered by no model serializer: tell the route walk

    def get(self, request: Request, pk: uuid.UUID) -> Response:
        client = client_get(user=request.user, pk=pk)
        audit_access(obj=client, action="read", details={"part": "summary"})
        return Response({"summary": "ok"})


class UnauditedClientApi(RetrieveAPIView):  # type: ignore[type-arg]
    """What a later issue must not do: serve a protected model without the mixin."""

    serializer_class = ClientOut
    queryset = User.objects.all()


demo_patterns: list[Any] = [
    path("demo/clients", ClientListApi.as_view(), name="demo-clients"),
    path("demo/clients/<uuid:pk>", ClientDetailApi.as_view(), name="demo-client"),
    path("demo/cards/<uuid:pk>", ClientCardApi.as_view(), name="demo-card"),
    path("demo/notes/<uuid:pk>", ClientNoteApi.as_view(), name="demo-note"),
]
