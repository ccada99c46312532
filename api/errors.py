"""Errors as RFC 9457 ``application/problem+json``, one handler for the whole API.

Body: ``type`` (a stable URN per code), ``title``, ``status``, ``detail``, ``code``,
``instance`` (the path, never a query string), ``request_id``, and for validation failures
``errors``: a list of ``{"field", "code", "message"}``. Domain errors raised by services
(subclasses of ``DomainError``) map here, so views never build error responses themselves.
Nothing from an unexpected exception (text, stack, SQL) reaches a response.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem_type(code: str) -> str:
    return f"urn:telehealth:problem:{code}"


class DomainError(Exception):
    """A refusal by a service: mapped to a problem response with ``status`` and ``code``."""

    status_code: int = status.HTTP_400_BAD_REQUEST
    code = "bad_request"
    title = "Bad request"
    default_detail = ""  # the message when none is given (falls back to the title)

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        extra: dict[str, Any] | None = None,
    ):
        self.detail = detail or self.default_detail or self.title
        if code is not None:
            self.code = code
        self.extra = extra or {}
        super().__init__(self.detail)


class UnauthorizedError(DomainError):
    """401: credentials or a token that do not authenticate (the detail never says which part)."""

    status_code = status.HTTP_401_UNAUTHORIZED
    code = "not_authenticated"
    title = "Authentication required"


class NotFoundError(DomainError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"
    title = "Not found"


class ConflictError(DomainError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"
    title = "Conflict"


class ForbiddenError(DomainError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "permission_denied"
    title = "Permission denied"


class UnprocessableError(DomainError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    code = "unprocessable"
    title = "Unprocessable request"


class TooManyRequestsError(DomainError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    code = "too_many_requests"
    title = "Too many requests"

    def __init__(self, detail: str | None = None, *, retry_after: int):
        super().__init__(detail, extra={"retry_after": retry_after})
        self.retry_after = retry_after


class ServiceUnavailableError(DomainError):
    """503: the service is at capacity for now; ``retry_after`` seconds is when to try again."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "service_unavailable"
    title = "Service unavailable"

    def __init__(self, detail: str | None = None, *, retry_after: int, code: str | None = None):
        super().__init__(detail, code=code, extra={"retry_after": retry_after})
        self.retry_after = retry_after


class PayloadTooLargeError(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


_TITLES = {
    400: "Bad request",
    401: "Authentication required",
    403: "Permission denied",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable request",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


def problem_body(
    *, status_code: int, code: str, detail: str, request: Any = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": problem_type(code),
        "title": _TITLES.get(status_code, "Error"),
        "status": status_code,
        "detail": detail,
        "code": code,
    }
    if request is not None:
        body["instance"] = request.path
        request_id = getattr(request, "request_id", None)
        if request_id:
            body["request_id"] = request_id
    # Extra members never replace the standard ones (a "status" detail must not clobber the
    # HTTP status a client reads from the body).
    return {**extra, **body}


def _flatten(detail: Any, prefix: str = "") -> list[dict[str, str]]:
    if isinstance(detail, dict):
        out: list[dict[str, str]] = []
        for key, value in detail.items():
            if isinstance(key, int):  # a ListField child: written like a list position
                out.extend(_flatten(value, f"{prefix}[{key}]"))
                continue
            name = "" if key == "non_field_errors" else str(key)
            out.extend(_flatten(value, f"{prefix}.{name}" if prefix and name else prefix or name))
        return out
    if isinstance(detail, list):
        out = []
        for index, item in enumerate(detail):
            if isinstance(item, dict | list) and not isinstance(item, exceptions.ErrorDetail):
                out.extend(_flatten(item, f"{prefix}[{index}]" if prefix else f"[{index}]"))
            else:
                out.extend(_flatten(item, prefix))
        return out
    return [
        {
            "field": prefix,
            "code": str(getattr(detail, "code", "invalid")),
            "message": str(detail),
        }
    ]


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    request = context.get("request")
    headers: dict[str, str] = {}
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):  # raised when DRF reads a body over the limit
        exc = PayloadTooLargeError()

    if isinstance(exc, DomainError):
        set_rollback()
        body = problem_body(
            status_code=exc.status_code,
            code=exc.code,
            detail=exc.detail,
            request=request,
            **exc.extra,
        )
        if isinstance(exc, TooManyRequestsError | ServiceUnavailableError):
            headers["Retry-After"] = str(exc.retry_after)
        return Response(
            body, status=exc.status_code, content_type=PROBLEM_CONTENT_TYPE, headers=headers
        )

    if not isinstance(exc, exceptions.APIException):
        return None  # unexpected: Django's handler500 answers with a generic problem

    set_rollback()
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]

    if isinstance(exc, exceptions.ValidationError):
        body = problem_body(
            status_code=exc.status_code,
            code="validation_error",
            detail="The request has invalid fields.",
            request=request,
            errors=_flatten(exc.detail),
        )
    else:
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.default_detail)
        body = problem_body(
            status_code=exc.status_code, code=str(code), detail=str(detail), request=request
        )
    return Response(
        body, status=exc.status_code, content_type=PROBLEM_CONTENT_TYPE, headers=headers
    )


def _django_problem(request: HttpRequest, status_code: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse(
        problem_body(status_code=status_code, code=code, detail=detail, request=request),
        status=status_code,
        content_type=PROBLEM_CONTENT_TYPE,
    )


def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _django_problem(request, 400, "bad_request", "The request could not be understood.")


def handler403(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _django_problem(request, 403, "permission_denied", "Permission denied.")


def handler404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _django_problem(request, 404, "not_found", "Not found.")


def handler500(request: HttpRequest) -> JsonResponse:
    return _django_problem(
        request, 500, "server_error", "An unexpected error occurred. It has been logged."
    )
