"""Cursor pagination for every list: stable under inserts, no page-number oracle.

The cursor is sealed with the field-encryption key (``api.crypto``): DRF's cursor is readable
base64 holding the position value of the ordering field, which for some lists (bookings by
start time) would put appointment times in URLs and logs. A sealed cursor is opaque, cannot be
forged, and a tampered or foreign one is a 404.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from rest_framework.exceptions import ErrorDetail, NotFound, ValidationError
from rest_framework.pagination import Cursor
from rest_framework.pagination import CursorPagination as DRFCursorPagination
from rest_framework.request import Request
from rest_framework.utils.urls import replace_query_param

from api import crypto

_CURSOR_AAD = b"pagination-cursor"
_MAX_DIGITS = 9  # int() of thousands of digits is slow (and refused past 4300)


def page_size_of(request: Request, *, param: str, default: int, maximum: int) -> int:
    """``?page_size=``: absent means ``default``, above ``maximum`` means ``maximum``; anything
    but a whole number from 1 is a 400 naming the parameter (never silently the default)."""
    raw = request.query_params.get(param)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw[: _MAX_DIGITS + 1]) < 1:
        message = f"A whole number from 1 (at most {maximum} rows are served)."
        raise ValidationError({param: [ErrorDetail(message, code="invalid")]})
    return min(int(raw[: _MAX_DIGITS + 1]), maximum)


def pagination_parameters(*, param: str, cursor_param: str, maximum: int) -> list[dict[str, Any]]:
    """The two query parameters of every list, for the OpenAPI document."""
    return [
        {
            "name": cursor_param,
            "required": False,
            "in": "query",
            "description": "Opaque: from the previous page's next (or previous) link.",
            "schema": {"type": "string"},
        },
        {
            "name": param,
            "required": False,
            "in": "query",
            "description": f"Rows per page (default 50); more than {maximum} gives {maximum}.",
            "schema": {"type": "integer", "minimum": 1},
        },
    ]


class CursorPagination(DRFCursorPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    ordering: str | list[str] | tuple[str, ...] = "-pk"

    def get_page_size(self, request: Request) -> int:
        return page_size_of(
            request,
            param=str(self.page_size_query_param),
            default=int(self.page_size),
            maximum=int(self.max_page_size),
        )

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return pagination_parameters(
            param=str(self.page_size_query_param),
            cursor_param=self.cursor_query_param,
            maximum=int(self.max_page_size),
        )

    def paginate_queryset(
        self, queryset: QuerySet[Any], request: Request, view: Any = None
    ) -> list[Any] | None:
        """A cursor whose position does not fit the ordering field is 404, not a 500."""
        try:
            return super().paginate_queryset(queryset, request, view)
        except (DjangoValidationError, ValueError, TypeError) as exc:
            raise NotFound(self.invalid_cursor_message) from exc

    def encode_cursor(self, cursor: Cursor) -> str:
        tokens: dict[str, str] = {}
        if cursor.offset != 0:
            tokens["o"] = str(cursor.offset)
        if cursor.reverse:
            tokens["r"] = "1"
        if cursor.position is not None:
            tokens["p"] = str(cursor.position)
        sealed = crypto.encrypt(urlencode(tokens), associated_data=_CURSOR_AAD)
        return replace_query_param(str(self.base_url), self.cursor_query_param, sealed)

    def decode_cursor(self, request: Request) -> Cursor | None:
        sealed = request.query_params.get(self.cursor_query_param)
        if sealed is None:
            return None
        try:
            tokens = parse_qs(
                crypto.decrypt(sealed, associated_data=_CURSOR_AAD), keep_blank_values=True
            )
            offset = max(0, min(int(tokens.get("o", ["0"])[0]), self.offset_cutoff))
            reverse = bool(int(tokens.get("r", ["0"])[0]))
        except (crypto.DecryptionError, ValueError, TypeError) as exc:
            raise NotFound(self.invalid_cursor_message) from exc
        position = tokens["p"][0] if "p" in tokens else None
        # DRF keeps positions as strings; its stubs say int.
        return Cursor(offset=offset, reverse=reverse, position=position)  # type: ignore[arg-type]
