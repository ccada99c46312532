"""Audit glue for the booking, note and client-profile views (``audit.mixins.AuditedMixin``)."""

from __future__ import annotations

from typing import Any

from audit.mixins import AuditedMixin
from audit.services import AccessScope, EventDraft


class ServiceReportedAuditMixin(AuditedMixin):
    """An ``AuditedMixin`` whose services report what they did (``audit_access`` with details
    such as from/to states). A reported event stands for its object: the generic event the
    mixin would add for the same rendered object is dropped, so a change is one event."""

    def audit_events(self, response: Any, scope: AccessScope) -> list[EventDraft]:
        drafts = super().audit_events(response, scope)
        reported = {(d.resource_type, d.resource_id) for d in scope.drafts}
        return [
            d
            for d in drafts
            if any(d is r for r in scope.drafts) or (d.resource_type, d.resource_id) not in reported
        ]
