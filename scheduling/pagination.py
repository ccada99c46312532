"""Keyset pagination for the directory, ordered by soonest availability.

The project's ``CursorPagination`` positions on the first ordering field only and counts ties
with an offset (capped at 1000), but thousands of therapists share one next-slot instant (or
have none). This cursor carries the whole key ``(availability_rank, id)``, so every page is an
index range scan whatever the ties: ``rank > r OR (rank = r AND id > i)``.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections import OrderedDict
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet
from rest_framework.exceptions import NotFound
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from api.pagination import CursorPagination, page_size_of, pagination_parameters


class SoonestAvailabilityPagination(BasePagination):
    cursor_query_param = "cursor"
    page_size = CursorPagination.page_size
    max_page_size = CursorPagination.max_page_size
    page_size_query_param = CursorPagination.page_size_query_param

    def _page_size(self, request: Request) -> int:
        """As the project's pagination: nonsense is a 400, a big one the maximum."""
        return page_size_of(
            request,
            param=self.page_size_query_param,
            default=self.page_size,
            maximum=self.max_page_size,
        )

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return pagination_parameters(
            param=self.page_size_query_param,
            cursor_param=self.cursor_query_param,
            maximum=self.max_page_size,
        )

    def _decode(self, raw: str) -> tuple[datetime, uuid.UUID]:
        try:
            rank, pk = json.loads(base64.urlsafe_b64decode(raw.encode("ascii")))
            return datetime.fromisoformat(rank), uuid.UUID(pk)
        except (ValueError, TypeError, UnicodeError) as exc:
            raise NotFound("Invalid cursor.", code="invalid_cursor") from exc

    @staticmethod
    def _encode(rank: datetime, pk: uuid.UUID) -> str:
        return base64.urlsafe_b64encode(json.dumps([rank.isoformat(), str(pk)]).encode()).decode()

    def paginate_queryset(self, queryset: QuerySet, request: Request, view: Any = None) -> list:
        size = self._page_size(request)
        raw = request.query_params.get(self.cursor_query_param)
        if raw:
            rank, pk = self._decode(raw)
            queryset = queryset.filter(
                Q(availability_rank__gt=rank) | Q(availability_rank=rank, id__gt=pk)
            )
        rows = list(queryset.order_by("availability_rank", "id")[: size + 1])
        self.next_url = None
        if len(rows) > size:
            rows = rows[:size]
            last = rows[-1]
            self.next_url = replace_query_param(
                request.build_absolute_uri(),
                self.cursor_query_param,
                self._encode(last.availability_rank, last.id),
            )
        return rows

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            OrderedDict([("next", self.next_url), ("previous", None), ("results", data)])
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["results"],
            "properties": {
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "previous": {"type": "string", "nullable": True, "format": "uri"},
                "results": schema,
            },
        }
