"""Permissions shared by every app.

The default (``IsAuthenticatedWithMFA``) lets a staff user (therapist, compliance officer,
admin) through only with a token whose ``amr`` says a second factor was verified at login.
Only account-management endpoints (``/me``, MFA enrolment, logout) use ``IsAuthenticatedAnyFactor``.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from api.authentication import claims_of
from api.models import Role


class IsAuthenticatedAnyFactor(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated)


class IsAuthenticatedWithMFA(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        claims = claims_of(request)
        if user.is_staff_role and not (claims and claims.mfa):
            raise PermissionDenied(
                "This account must sign in with its second factor to do this.",
                code="mfa_required",
            )
        return True


def has_role(*roles: Role) -> type[BasePermission]:
    """A permission class admitting authenticated users with MFA (staff) in one of ``roles``."""

    allowed = frozenset(roles)

    class HasRole(IsAuthenticatedWithMFA):
        def has_permission(self, request: Request, view: Any) -> bool:
            return (
                super().has_permission(request, view)
                and getattr(request.user, "role", None) in allowed
            )

    HasRole.__name__ = "HasRole_" + "_".join(sorted(r.value for r in allowed))
    return HasRole
