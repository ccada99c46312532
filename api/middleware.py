"""Request id on every request and response; errors under ``/api/`` as problem documents in
every mode; ``Cache-Control: no-store`` on every API answer."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from api import errors
from api.logging import request_id_var

_REQUEST_ID = re.compile(r"^[A-Za-z0-9\-]{8,64}$")


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        offered = request.headers.get("X-Request-ID", "")
        request_id = offered if _REQUEST_ID.match(offered) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        token = request_id_var.set(request_id)  # every log line of this request carries it
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request_id
        return response


# Django's own error pages by status: in DEBUG it answers an unknown route or a malformed path
# id with its HTML debug page instead of calling the handler (api/urls.py, handler404).
_HANDLERS: dict[int, Callable[[HttpRequest], HttpResponse]] = {
    400: errors.handler400,
    403: errors.handler403,
    404: errors.handler404,
    500: errors.handler500,
}


class ApiProblemMiddleware:
    """Under ``/api/`` an error is problem+json whatever ``DEBUG`` says (API-06): an HTML error
    page that Django made is replaced by the same status's problem document."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        handler = _HANDLERS.get(response.status_code)
        if (
            handler is not None
            and request.path.startswith("/api/")
            and response.get("Content-Type", "").startswith("text/html")
        ):
            return handler(request)
        return response


class NoStoreMiddleware:
    """API answers may carry protected data: no shared or browser cache keeps them."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path.startswith("/api/") and not response.has_header("Cache-Control"):
            response["Cache-Control"] = "no-store"
            response["Pragma"] = "no-cache"
        return response
