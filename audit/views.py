"""Review and export of the trail (compliance officers), and a client's own access log.

These views are themselves audited with ``AuditedMixin`` (a denied attempt is recorded like any
other), but a successful read records one "audit log used" (or "export") event naming the
filters, not one event per row read.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlencode

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.generics import ListAPIView
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.authentication import user_of
from api.serializers import problem_responses
from audit.export import (
    MEDIA_TYPES,
    PROVENANCE_MEDIA_TYPE,
    SCHEMA_MEDIA_TYPES,
    ExportPlan,
    export_chunks,
    export_plan,
    export_provenance,
)
from audit.mixins import AuditedMixin
from audit.models import AuditEvent
from audit.permissions import CanReviewAuditTrail
from audit.selectors import EventFilters, access_log_for, event_list, users_by_id
from audit.serializers import (
    AccessLogEntryOut,
    AuditEventOut,
    EventFilterQuery,
    EventListQuery,
    ExportManifestQuery,
    ExportQuery,
)
from audit.services import AccessScope, EventDraft

TAGS = ["audit"]
LOG_USED = "audit.log_used"  # DICOM 110101 Audit Log Used
EXPORTED = "audit.export"  # DICOM 110106 Export
DISCLOSURES_READ = "audit.disclosures_read"
MANIFEST_READ = "audit.export_manifest"  # DICOM 110101 Audit Log Used


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


_EXTENSIONS = {"csv": "csv", "jsonl": "jsonl", "fhir": "ndjson"}
_BODIES = {
    "csv": (
        "CSV with a header row, then one row per event; the last row is the signed manifest "
        "(#manifest, then its JSON). Cells that could run as spreadsheet formulas are prefixed "
        "with '."
    ),
    "jsonl": 'JSON lines, one event per line; the last line is {"manifest": <signed manifest>}.',
    "fhir": (
        "FHIR R4 AuditEvent NDJSON: AuditEvent resources only, one per line (FHIR Bulk Data: one "
        "resource type per file). Its signed manifest is GET /api/v1/audit/export/fhir/manifest "
        "with the same filters and upto_seq = the head seq in X-Audit-Chain-Head (also given "
        'as the Link header, rel="describedby").'
    ),
}
_STREAMED = (
    "Streamed (chunked): every sealed event matching the filters, oldest first. Committed events "
    "are sealed first; the chain head the export goes up to is in X-Audit-Chain-Head "
    "(seq:hash). The manifest signs the format, filters, count, first/last seq, head and the "
    "SHA-256 of the body. Compliance officers only, with MFA and a recent sign-in; the export "
    "is itself recorded (audit.export)."
)


def _export_schema(fmt: str) -> Any:
    return extend_schema(
        operation_id=f"audit_export_{fmt}",
        tags=TAGS,
        summary={
            "csv": "Export the audit trail as CSV",
            "jsonl": "Export the audit trail as JSON lines",
            "fhir": "Export the audit trail as FHIR AuditEvent NDJSON",
        }[fmt],
        description=f"{_STREAMED}\n\n{_BODIES[fmt]}",
        parameters=[EventFilterQuery],
        request=None,
        responses={
            (200, SCHEMA_MEDIA_TYPES[fmt]): OpenApiResponse(
                OpenApiTypes.STR, description=f"Streamed. {_BODIES[fmt]}"
            ),
            **problem_responses(400, 401, 403),
        },
    )


class AuditExportApi(AuditedMixin, APIView):
    """The trail streamed in one format (``fmt``); ``GET /audit/export?format=`` picks it by
    the query (kept for existing clients; deprecated in the schema)."""

    audit_resource = "audit.event"
    audit_models = (AuditEvent,)  # streamed, not rendered by a serializer: tell the route walk
    permission_classes = [CanReviewAuditTrail]
    fmt = ""
    export_action = EXPORTED

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # ``format`` picks the export format here, not a DRF renderer: problems render as JSON.
        renderer = JSONRenderer()
        return renderer, renderer.media_type

    def audit_events(self, response: HttpResponseBase, scope: AccessScope) -> list[EventDraft]:
        plan: ExportPlan = self.plan
        return [
            EventDraft(
                action=self.export_action,
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

    def export(self, request: Request, fmt: str, query: EventFilterQuery) -> StreamingHttpResponse:
        self.plan = export_plan(fmt=fmt, filters=query.filters())
        response = StreamingHttpResponse(
            _streaming(request, export_chunks(self.plan)), content_type=MEDIA_TYPES[fmt]
        )
        head = self.plan.head
        response["Content-Disposition"] = (
            f'attachment; filename="audit-{head.seq}.{_EXTENSIONS[fmt]}"'
        )
        response["X-Audit-Chain-Head"] = f"{head.seq}:{head.hash}"
        if fmt == "fhir":
            filters = EventFilterQuery().fields
            params = {k: v for k, v in request.query_params.items() if k in filters}
            url = reverse("audit-export-fhir-manifest")
            url += "?" + urlencode({**params, "upto_seq": head.seq})
            response["Link"] = f'<{url}>; rel="describedby"; type="{PROVENANCE_MEDIA_TYPE}"'
        return response

    @extend_schema(
        operation_id="audit_export",
        tags=TAGS,
        summary="Export the audit trail (format chosen by a query parameter; deprecated)",
        description=(
            "Kept for existing clients: the same as GET /api/v1/audit/export/{csv,jsonl,fhir} "
            "(audit_export_csv, audit_export_jsonl, audit_export_fhir), which generated "
            f"clients should call instead. {_STREAMED}"
        ),
        parameters=[ExportQuery],
        request=None,
        responses={
            **{
                (200, media): OpenApiResponse(OpenApiTypes.STR, description=_BODIES[fmt])
                for fmt, media in SCHEMA_MEDIA_TYPES.items()
            },
            **problem_responses(400, 401, 403),
        },
        deprecated=True,
    )
    def get(self, request: Request) -> HttpResponseBase:
        query = ExportQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        return self.export(request, query.validated_data["format"], query)


class AuditExportFormatApi(AuditExportApi):
    """Base of the per-format operations: the filters in the query, the format in the path."""

    def get(self, request: Request) -> StreamingHttpResponse:
        query = EventFilterQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        return self.export(request, self.fmt, query)


class AuditExportCsvApi(AuditExportFormatApi):
    fmt = "csv"

    @_export_schema("csv")
    def get(self, request: Request) -> StreamingHttpResponse:
        return super().get(request)


class AuditExportJsonLinesApi(AuditExportFormatApi):
    fmt = "jsonl"

    @_export_schema("jsonl")
    def get(self, request: Request) -> StreamingHttpResponse:
        return super().get(request)


class AuditExportFhirApi(AuditExportFormatApi):
    fmt = "fhir"

    @_export_schema("fhir")
    def get(self, request: Request) -> StreamingHttpResponse:
        return super().get(request)


class AuditExportFhirManifestApi(AuditExportApi):
    fmt = "fhir"
    export_action = MANIFEST_READ

    @extend_schema(
        operation_id="audit_export_fhir_manifest",
        tags=TAGS,
        summary="Get the signed manifest of a FHIR audit export",
        description=(
            "The signed manifest of GET /api/v1/audit/export/fhir with the same filters, whose "
            "X-Audit-Chain-Head seq is upto_seq, as a FHIR R4 Provenance resource: its "
            "signature data is the base64 of the manifest's canonical JSON (format, filters, "
            "count, first/last seq, head, SHA-256 of the NDJSON body, kid, sig; Ed25519 with "
            "the audit key). The body is a function of the filters and the head, so the "
            "manifest is derived again from them (one more pass over those events). Reading it "
            "is recorded (audit.export_manifest). 404 when no sealed event has that seq."
        ),
        parameters=[ExportManifestQuery],
        request=None,
        responses={
            (200, PROVENANCE_MEDIA_TYPE): OpenApiResponse(
                OpenApiTypes.OBJECT, description="A FHIR R4 Provenance resource."
            ),
            **problem_responses(400, 401, 403, 404),
        },
    )
    def get(self, request: Request) -> HttpResponse:
        query = ExportManifestQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        self.plan = export_plan(
            fmt="fhir", filters=query.filters(), upto_seq=query.validated_data["upto_seq"]
        )
        provenance = export_provenance(self.plan)
        return HttpResponse(
            json.dumps(provenance, ensure_ascii=False, sort_keys=True),
            content_type=PROVENANCE_MEDIA_TYPE,
        )


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
