"""Client profile endpoints. Every read, write and lookup is audited (``AuditedMixin``);
PHI is only ever sent in request and response bodies, never in a URL."""

from __future__ import annotations

import uuid

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.authentication import user_of
from api.models import Role
from api.permissions import has_role
from api.serializers import problem_responses
from scheduling.bookings.audit import ServiceReportedAuditMixin
from scheduling.clients import selectors, services
from scheduling.clients.serializers import ClientProfileIn, ClientProfileOut, PhoneLookupIn
from scheduling.models import ClientProfile

IsClient = has_role(Role.CLIENT)
IsTherapist = has_role(Role.THERAPIST)
IsClientOrTherapist = has_role(Role.CLIENT, Role.THERAPIST)
TAGS = ["clients"]


class _ProfileView(ServiceReportedAuditMixin, APIView):
    audit_models = (ClientProfile,)  # rendered by a plain serializer: tell the route walker
    audit_resource = "scheduling.client_profile"
    audit_lookup_kwarg = "client_id"
    lookup_field = "user_id"


class MyClientProfileView(_ProfileView):
    permission_classes = [IsClient]

    def audit_action(self) -> str:
        # One record, named by the token rather than the URL: a read (AUD-01), not a query.
        return "read" if self.request.method in ("GET", "HEAD") else super().audit_action()

    @extend_schema(tags=TAGS, responses={200: ClientProfileOut, **problem_responses(403, 404)})
    def get(self, request: Request) -> Response:
        return Response(ClientProfileOut(selectors.own_client_profile(user=user_of(request))).data)

    @extend_schema(
        tags=TAGS,
        request=ClientProfileIn,
        responses={200: ClientProfileOut, **problem_responses(400, 403)},
        description="Create or replace your profile (every field).",
    )
    def put(self, request: Request) -> Response:
        data = ClientProfileIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        contact = v["emergency_contact"]
        user = user_of(request)
        services.client_profile_save(
            user=user,
            details=services.ClientDetails(
                date_of_birth=v["date_of_birth"],
                phone=v["phone"],
                emergency_contact=services.EmergencyContact(**contact) if contact else None,
                home_jurisdiction=v["home_jurisdiction"],
            ),
            request=request,
            now=timezone.now(),
        )
        return Response(ClientProfileOut(selectors.own_client_profile(user=user)).data)


class ClientProfileView(_ProfileView):
    """A client's profile for the client or a therapist they have sessions with (else 404)."""

    permission_classes = [IsClientOrTherapist]

    @extend_schema(tags=TAGS, responses={200: ClientProfileOut, **problem_responses(403, 404)})
    def get(self, request: Request, client_id: uuid.UUID) -> Response:
        profile = selectors.client_profile_for(client_id=client_id, viewer=user_of(request))
        return Response(ClientProfileOut(profile).data)


class ClientPhoneLookupView(_ProfileView):
    """Which of my clients is calling from this number? (POST: the number stays out of URLs.)"""

    permission_classes = [IsTherapist]

    def audit_action(self) -> str:
        return "search"

    @extend_schema(
        tags=TAGS,
        request=PhoneLookupIn,
        responses={200: ClientProfileOut(many=True), **problem_responses(400, 403)},
    )
    def post(self, request: Request) -> Response:
        data = PhoneLookupIn(data=request.data)
        data.is_valid(raise_exception=True)
        rows = selectors.therapist_clients_with_phone(
            therapist_user=user_of(request), phone=data.validated_data["phone"]
        )
        return Response(ClientProfileOut(rows, many=True).data)
