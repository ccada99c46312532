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
from rest_framework.exceptions import NotFound
from rest_framework.pagination import Cursor
from rest_framework.pagination import CursorPagination as DRFCursorPagination
from rest_framework.request import Request
from rest_framework.utils.urls import replace_query_param

from api import crypto

_CURSOR_AAD = b"pagination-cursor"


class CursorPagination(DRFCursorPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    ordering: str | list[str] | tuple[str, ...] = "-pk"

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
