"""Audit routes, mounted at ``/api/v1/``."""

from django.urls import URLPattern, URLResolver, path

from audit import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("audit/events", views.AuditEventListApi.as_view(), name="audit-events"),
    path("audit/export", views.AuditExportApi.as_view(), name="audit-export"),
    path("audit/export/csv", views.AuditExportCsvApi.as_view(), name="audit-export-csv"),
    path("audit/export/jsonl", views.AuditExportJsonLinesApi.as_view(), name="audit-export-jsonl"),
    path("audit/export/fhir", views.AuditExportFhirApi.as_view(), name="audit-export-fhir"),
    path(
        "audit/export/fhir/manifest",
        views.AuditExportFhirManifestApi.as_view(),
        name="audit-export-fhir-manifest",
    ),
    path("me/access-log", views.AccessLogApi.as_view(), name="me-access-log"),
]
