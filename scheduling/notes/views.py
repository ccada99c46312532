"""Session note endpoints: the booking's therapist only (clients, other therapists and staff
never read notes here); every read and write is audited by ``AuditedMixin``."""

from __future__ import annotations

import uuid

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.authentication import user_of
from api.models import Role
from api.permissions import has_role
from api.serializers import problem_responses
from scheduling.bookings.audit import ServiceReportedAuditMixin
from scheduling.notes import selectors, services
from scheduling.notes.serializers import NoteIn, NoteOut, NoteVersionOut

IsTherapist = has_role(Role.THERAPIST)
TAGS = ["notes"]


class _NoteView(ServiceReportedAuditMixin, APIView):
    """Serves ``scheduling.session_note``, named in the URL by its booking's id."""

    permission_classes = [IsTherapist]
    audit_resource = "scheduling.session_note"
    audit_lookup_kwarg = "booking_id"
    lookup_field = "booking_id"


class NoteView(_NoteView):
    @extend_schema(tags=TAGS, responses={200: NoteOut, **problem_responses(403, 404, 500)})
    def get(self, request: Request, booking_id: uuid.UUID) -> Response:
        note = selectors.note_current(booking_id=booking_id, author=user_of(request))
        return Response(NoteOut(note).data)

    @extend_schema(
        tags=TAGS,
        request=NoteIn,
        responses={200: NoteOut, 201: NoteOut, **problem_responses(400, 403, 404, 409)},
        description="Write the first version (expected_version 0) or the next one.",
    )
    def put(self, request: Request, booking_id: uuid.UUID) -> Response:
        data = NoteIn(data=request.data)
        data.is_valid(raise_exception=True)
        note = services.note_write(
            booking_id=booking_id,
            author=user_of(request),
            body=data.validated_data["body"],
            expected_version=data.validated_data["expected_version"],
            request=request,
            now=timezone.now(),
        )
        note.body = data.validated_data["body"]  # type: ignore[attr-defined]
        code = status.HTTP_201_CREATED if note.current_version == 1 else status.HTTP_200_OK
        return Response(NoteOut(note).data, status=code)


class NoteSignView(_NoteView):
    @extend_schema(
        tags=TAGS, request=None, responses={200: NoteOut, **problem_responses(403, 404, 409)}
    )
    def post(self, request: Request, booking_id: uuid.UUID) -> Response:
        author = user_of(request)
        services.note_sign(
            booking_id=booking_id, author=author, request=request, now=timezone.now()
        )
        return Response(NoteOut(selectors.note_current(booking_id=booking_id, author=author)).data)


class NoteVersionsView(_NoteView):
    @extend_schema(
        tags=TAGS, responses={200: NoteVersionOut(many=True), **problem_responses(403, 404, 500)}
    )
    def get(self, request: Request, booking_id: uuid.UUID) -> Response:
        versions = selectors.note_versions(booking_id=booking_id, author=user_of(request))
        return Response(NoteVersionOut(versions, many=True).data)
