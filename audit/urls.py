"""Audit routes, mounted at ``/api/v1/``."""

from django.urls import URLPattern, URLResolver, path

from audit import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("audit/events", views.AuditEventListApi.as_view(), name="audit-events"),
    path("audit/export", views.AuditExportApi.as_view(), name="audit-export"),
    path("me/access-log", views.AccessLogApi.as_view(), name="me-access-log"),
]
