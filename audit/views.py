"""Review and export of the trail (compliance officers), and a client's own access log.

These views are themselves audited with ``AuditedMixin`` (a denied attempt is recorded like any
other), but a successful read records one "audit log used" (or "export") event naming the
filters, not one event per row read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponseBase, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.generics import ListAPIView
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.authentication import user_of
from api.serializers import problem_responses
from audit.export import MEDIA_TYPES, ExportPlan, export_chunks, export_plan
from audit.mixins import AuditedMixin
from audit.models import AuditEvent
from audit.permissions import CanReviewAuditTrail
from audit.selectors import EventFilters, access_log_for, event_list, users_by_id
from audit.serializers import (
    AccessLogEntryOut,
    AuditEventOut,
    EventListQuery,
    ExportQuery,
)
from audit.services import AccessScope, EventDraft

TAGS = ["audit"]
LOG_USED = "audit.log_used"  # DICOM 110101 Audit Log Used
EXPORTED = "audit.export"  # DICOM 110106 Export
DISCLOSURES_READ = "audit.disclosures_read"


class AuditEventListApi(AuditedMixin, ListAPIView):
    audit_resource = "audit.event"
    permission_classes = [CanReviewAuditTrail]
    serializer_class = AuditEventOut

    def _filters(self) -> EventFilters:
        query = EventListQuery(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return query.filters()

    def get_queryset(self) -> Any:
        self.filters = self._filters()
        return event_list(filters=self.filters)

    def audit_events(self, response: HttpResponseBase, scope: AccessScope) -> list[EventDraft]:
        results = getattr(response, "data", {}).get("results", [])
        return [
            EventDraft(
                action=LOG_USED,
                resource_type=self.audit_resource,
                patient_id=self.filters.patient_id,
                details={
                    **self.audit_details(),
                    "filters": self.filters.as_details(),
                    "count": len(results),
                },
            )
        ]

    @extend_schema(
        tags=TAGS,
        summary="Review the audit trail",
        description=(
            "Compliance officers only, with MFA and a sign-in within "
            "AUDIT_REVIEW_MAX_AUTH_AGE_SECONDS. Newest first, cursor-paginated. Events not yet "
            "sealed into the chain have seq and hash null. Each call is itself recorded "
            "(audit.log_used). Unknown query parameters are refused (400)."
        ),
        parameters=[EventListQuery],
        responses={200: AuditEventOut(many=True), **problem_responses(400, 401, 403)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


def _streaming(request: Request, chunks: Iterator[bytes]) -> Iterator[bytes] | AsyncIterator[bytes]:
    """Under ASGI, pull each chunk in the request's sync thread (Django would otherwise read a
    sync iterator whole into memory before sending); under WSGI, the iterator itself."""
    if not isinstance(request._request, ASGIRequest):
        return chunks

    def pull_one() -> bytes | None:
        return next(chunks, None)

    async def pull() -> AsyncIterator[bytes]:
        while (chunk := await sync_to_async(pull_one, thread_sensitive=True)()) is not None:
            yield chunk

    return pull()


class AuditExportApi(AuditedMixin, APIView):
    audit_resource = "audit.event"
    audit_models = (AuditEvent,)  # streamed, not rendered by a serializer: tell the route walk
    permission_classes = [CanReviewAuditTrail]

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # ``format`` picks the export format here, not a DRF renderer: problems render as JSON.
        renderer = JSONRenderer()
        return renderer, renderer.media_type

    def audit_events(self, response: HttpResponseBase, scope: AccessScope) -> list[EventDraft]:
        plan: ExportPlan = self.plan
        return [
            EventDraft(
                action=EXPORTED,
                resource_type=self.audit_resource,
                patient_id=plan.filters.patient_id,
                details={
                    **self.audit_details(),
                    "format": plan.fmt,
                    "filters": plan.filters.as_details(),
                    "upto_seq": plan.head.seq,
                },
            )
        ]

    @extend_schema(
        tags=TAGS,
        summary="Export the audit trail",
        description=(
            "Streams every sealed event matching the filters, oldest first, as CSV, JSON lines, "
            "or FHIR R4 AuditEvent NDJSON. Committed events are sealed first; the chain head the "
            "export goes up to is in X-Audit-Chain-Head (seq:hash). The last line is a signed "
            "manifest (count, first/last seq, head, SHA-256 of the body): a #manifest row in CSV, "
            'a {"manifest": ...} line in JSON lines, a Provenance resource in FHIR. CSV cells '
            "that could run as spreadsheet formulas are prefixed with '. The export is itself "
            "recorded (audit.export)."
        ),
        parameters=[ExportQuery],
        request=None,
        responses={
            **{
                (200, media): OpenApiResponse(OpenApiTypes.BINARY) for media in MEDIA_TYPES.values()
            },
            **problem_responses(400, 401, 403),
        },
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        query = ExportQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        fmt = query.validated_data["format"]
        self.plan = export_plan(fmt=fmt, filters=query.filters())
        response = StreamingHttpResponse(
            _streaming(request, export_chunks(self.plan)), content_type=MEDIA_TYPES[fmt]
        )
        extension = {"csv": "csv", "jsonl": "jsonl", "fhir": "ndjson"}[fmt]
        name = f"audit-{self.plan.head.seq}.{extension}"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        response["X-Audit-Chain-Head"] = f"{self.plan.head.seq}:{self.plan.head.hash}"
        return response


class AccessLogApi(AuditedMixin, ListAPIView):
    audit_resource = "audit.event"
    serializer_class = AccessLogEntryOut
    queryset = AuditEvent.objects.none()  # the schema's model; get_queryset() picks the rows

    def get_queryset(self) -> Any:
        return access_log_for(user=user_of(self.request))

    def audit_events(self, response: HttpResponseBase, scope: AccessScope) -> list[EventDraft]:
        results = getattr(response, "data", {}).get("results", [])
        return [
            EventDraft(
                action=DISCLOSURES_READ,
                resource_type=self.audit_resource,
                patient_id=user_of(self.request).pk,
                details={**self.audit_details(), "count": len(results)},
            )
        ]

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.get_queryset()) or []
        actors = users_by_id({event.actor_id for event in page if event.actor_id is not None})
        data = AccessLogEntryOut(page, many=True, context={"actors": actors}).data
        return self.get_paginated_response(data)

    @extend_schema(
        tags=["account"],
        summary="Who accessed my records",
        description=(
            "Every allowed read or change of the caller's records by someone else, newest "
            "first: when, what, and who (staff by name and role; others by role only)."
        ),
        responses={200: AccessLogEntryOut(many=True), **problem_responses(401, 403)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)
