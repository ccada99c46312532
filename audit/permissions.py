"""Who may read the trail: compliance officers, with MFA, recently signed in (AUD-17)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request

from api.authentication import claims_of
from api.models import Role
from api.permissions import has_role


class CanReviewAuditTrail(has_role(Role.COMPLIANCE_OFFICER)):  # type: ignore[misc]
    """A compliance officer whose token proves MFA and a sign-in within
    ``AUDIT_REVIEW_MAX_AUTH_AGE_SECONDS``; anyone else is refused (403)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not super().has_permission(request, view):
            return False
        claims = claims_of(request)
        age = timezone.now().timestamp() - (claims.auth_time if claims else 0)
        if age > settings.AUDIT_REVIEW_MAX_AUTH_AGE_SECONDS:
            raise PermissionDenied(
                "Sign in again (with your second factor) to review the audit trail.",
                code="reauthentication_required",
            )
        return True
