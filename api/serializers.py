"""Base serializers shared by every app."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from api.errors import PROBLEM_CONTENT_TYPE


class StrictInputSerializer(serializers.Serializer):
    """An input serializer that refuses fields it does not know (400, not silently ignored)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: ["This field is not allowed."] for name in unknown}, code="unknown_field"
                )
        return super().to_internal_value(data)


# In a query string an unencoded "+" arrives as a space: "...T09:00:00 02:00" means "+02:00".
_SPACE_OFFSET = re.compile(r" (\d\d:?\d\d)$")
_MAX_DATETIME_LENGTH = 40
# Sessions, slots and schedules lie in this century: date arithmetic on instants near the ends
# of the calendar (year 1 or 9999) overflows.
THIS_CENTURY = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


class OffsetDateTimeField(serializers.DateTimeField):
    """An ISO 8601 instant with its UTC offset (``Z`` or ``+02:00``), optionally within
    ``bounds`` (``[earliest, latest)``).

    Refused with 400, never a 500 (API-05): a bare local time, anything that does not parse,
    and text that looks like a date-time but names no real instant (30 February, 29 February of
    a common year, 24:00, minute 60, an offset of +25:00), on which ``parse_datetime`` raises.
    """

    default_error_messages = {
        "naive": "Give the time with its UTC offset (ISO 8601).",
        "not_a_time": "Not a real date-time (ISO 8601 with a UTC offset).",
        "range": "Give a date between {earliest} and {latest}.",
    }

    def __init__(self, *, bounds: tuple[datetime, datetime] | None = None, **kwargs: Any):
        self.bounds = bounds
        super().__init__(**kwargs)

    def to_internal_value(self, value: Any) -> datetime:
        if isinstance(value, datetime):
            parsed: datetime | None = value
        elif isinstance(value, str) and len(value) <= _MAX_DATETIME_LENGTH:
            try:
                parsed = parse_datetime(_SPACE_OFFSET.sub(r"+\1", value.strip()))
            except ValueError:  # well-formed, but no such day, hour, minute or offset
                parsed = None
        else:
            parsed = None
        if parsed is None:
            self.fail("not_a_time")
        if parsed.tzinfo is None:
            self.fail("naive")
        if self.bounds is not None and not self.bounds[0] <= parsed < self.bounds[1]:
            earliest, latest = self.bounds
            self.fail("range", earliest=earliest.year, latest=latest.year - 1)
        return self.enforce_timezone(parsed)


class ProblemFieldErrorSerializer(serializers.Serializer):
    field = serializers.CharField()
    code = serializers.CharField()
    message = serializers.CharField()


class ProblemSerializer(serializers.Serializer):
    """An RFC 9457 problem document (api/errors.py), described for the OpenAPI schema."""

    type = serializers.CharField(help_text="urn:telehealth:problem:<code>")
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField(help_text="Prose for people; branch on code instead.")
    code = serializers.CharField(help_text="Stable: clients branch on it.")
    instance = serializers.CharField(required=False, help_text="The path, without a query.")
    request_id = serializers.CharField(required=False, help_text="As in X-Request-ID.")
    retry_after = serializers.IntegerField(required=False, help_text="Seconds (with 429).")


class ValidationProblemSerializer(ProblemSerializer):
    """A problem document for a 400: with ``errors`` when fields or parameters are invalid
    (``code`` ``validation_error``)."""

    def get_fields(self) -> dict[str, serializers.Field]:
        # "errors" (field-level details) would shadow Serializer.errors as a class attribute.
        fields = super().get_fields()
        fields["errors"] = ProblemFieldErrorSerializer(
            many=True, required=False, help_text="Every invalid field (validation_error only)."
        )
        return fields


def problem_responses(*statuses: int) -> dict[tuple[int, str], Any]:
    """``extend_schema(responses=...)`` entries: each status answered with a problem document
    (``api.schema.ApiAutoSchema`` adds the statuses a view implies by itself)."""
    return {
        (code, PROBLEM_CONTENT_TYPE): OpenApiResponse(
            ValidationProblemSerializer if code == 400 else ProblemSerializer,
            description="Problem",
        )
        for code in statuses
    }


_built: dict[type[Any], serializers.BaseSerializer[Any]] = {}


def represent(serializer_class: type[serializers.BaseSerializer[Any]], instance: Any) -> Any:
    """``serializer_class(instance).data``, from one serializer built once per process.

    DRF builds a serializer's fields again for every instance (a ``ModelSerializer`` from its
    model's metadata): for one object, most of the cost of its output. ``to_representation``
    keeps no state, so one serializer serves every instance and thread, as a ``ListSerializer``'s
    one child serves every item (a thread per request under ASGI: a cache per thread would
    never be hit). Only for an output serializer that reads no ``context``."""
    serializer = _built.get(serializer_class)
    if serializer is None:  # two threads may both build it: either one serves
        serializer = _built.setdefault(serializer_class, serializer_class())
    return serializer.to_representation(instance)
