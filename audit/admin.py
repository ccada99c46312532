"""Admin: protected models' pages audited like the API; the trail itself read-only.

``AuditedModelAdmin`` is the admin counterpart of ``AuditedMixin``: the admin page of any
protected model must use it (the route-walking test checks), so viewing and editing records in
the admin leave the same events as the API does.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import transaction
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse

from api.models import Role
from audit.models import AuditEvent
from audit.services import (
    EventDraft,
    access_drafts,
    audit_access,
    audit_record_many,
    origin_of,
    touched,
)


class AuditedModelAdmin(admin.ModelAdmin):
    def audit_view_events(
        self, request: HttpRequest, objects: list[Any], action: str
    ) -> list[EventDraft]:
        items = [item for item in map(touched, objects) if item is not None]
        return access_drafts(objects=items, action=action, details={"via": "admin"})

    def _audit_viewed(self, request: HttpRequest, objects: list[Any], action: str) -> None:
        drafts = self.audit_view_events(request, objects, action)
        with transaction.atomic():
            audit_record_many(drafts=drafts, origin=origin_of(request=request))

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if response.status_code == 200 and changelist is not None:
            self._audit_viewed(request, list(changelist.result_list), "list")
        return response

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        response = super().change_view(request, object_id, form_url, extra_context)
        original = getattr(response, "context_data", {}).get("original")
        if request.method == "GET" and response.status_code == 200 and original is not None:
            self._audit_viewed(request, [original], "read")
        return response

    def save_model(self, request: HttpRequest, obj: Model, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        details = {"via": "admin", "fields": sorted(form.changed_data)}
        audit_access(
            obj=obj, action="update" if change else "create", request=request, details=details
        )

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        audit_access(obj=obj, action="delete", request=request, details={"via": "admin"})
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in queryset:
            audit_access(obj=obj, action="delete", request=request, details={"via": "admin"})
        super().delete_queryset(request, queryset)


@admin.register(AuditEvent)
class AuditEventAdmin(AuditedModelAdmin):
    """Read-only: no add, change or delete for anyone, the superuser included; and readable
    only by compliance officers (AUD-17), so an admin account does not see the trail here."""

    list_display = ("id", "occurred_at", "action", "outcome", "actor_role", "resource_type")
    list_filter = ("outcome", "actor_role")
    ordering = ("-id",)
    show_full_result_count = False

    def audit_view_events(
        self, request: HttpRequest, objects: list[Any], action: str
    ) -> list[EventDraft]:
        details = {"via": "admin", "count": len(objects)}
        return [EventDraft(action="audit.log_used", resource_type="audit.event", details=details)]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return getattr(request.user, "role", None) == Role.COMPLIANCE_OFFICER

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
