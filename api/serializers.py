"""Base serializers shared by every app."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from django.http import QueryDict
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail

from api.errors import PROBLEM_CONTENT_TYPE

NOT_TEXT = "Not a valid string."


def _is_text(field: serializers.Field, value: Any) -> bool:
    """Whether ``value`` is what a text field (or a list of text) takes: a JSON string.

    DRF's ``CharField`` (and ``EmailField``, ``RegexField``, ``URLField``... built on it)
    turns a number into its text, so ``{"full_name": 0}`` would be saved as ``"0"`` although
    the schema says ``type: string``."""
    if value is None or value is serializers.empty:
        return True  # null and absence are the field's own business (allow_null, required)
    if isinstance(field, serializers.CharField):
        return isinstance(value, str)
    if isinstance(field, serializers.ListField) and isinstance(value, list):
        return all(_is_text(field.child, item) for item in value)
    return True


class StrictInputSerializer(serializers.Serializer):
    """An input serializer that refuses fields it does not know (400, not silently ignored),
    and text fields given anything but a string (400 ``invalid``, not coerced)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, QueryDict):
            # A query string is judged as a body is: a parameter sent empty (?resource=) is a
            # value, refused unless its field allows blank, not DRF's "absent" of HTML forms.
            # A parameter's last value is read, or every value for a list.
            data = {
                name: (
                    data.getlist(name)
                    if isinstance(self.fields.get(name), serializers.ListField)
                    else data[name]
                )
                for name in data
            }
        if not isinstance(data, dict):
            return super().to_internal_value(data)
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(
                {name: ["This field is not allowed."] for name in unknown}, code="unknown_field"
            )
        not_text = {
            name: [ErrorDetail(NOT_TEXT, code="invalid")]
            for name, field in self.fields.items()
            if not field.read_only and not _is_text(field, data.get(name))
        }
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if not_text and isinstance(exc.detail, dict):  # every invalid field is reported
                raise serializers.ValidationError({**exc.detail, **not_text}) from exc
            raise
        if not_text:
            raise serializers.ValidationError(not_text)
        return value


# In a query string an unencoded "+" arrives as a space: "...T09:00:00 02:00" means "+02:00".
_SPACE_OFFSET = re.compile(r" (\d\d:?\d\d)$")
_MAX_DATETIME_LENGTH = 40
# Sessions, slots and schedules lie in this century: date arithmetic on instants near the ends
# of the calendar (year 1 or 9999) overflows.
THIS_CENTURY = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def _years(bounds: tuple[datetime, datetime]) -> str:
    """The pattern of the years in ``bounds``, which must be one whole century: for
    ``THIS_CENTURY``, ``^20[0-9]{2}-``."""
    first = bounds[0].year - bounds[0].year % 100
    if bounds != (datetime(first, 1, 1, tzinfo=UTC), datetime(first + 100, 1, 1, tzinfo=UTC)):
        raise ValueError("bounds must be one whole century")
    return f"^{first // 100}[0-9]{{2}}-"


class OffsetDateTimeField(serializers.DateTimeField):
    """An ISO 8601 instant with its UTC offset (``Z`` or ``+02:00``), optionally written
    within ``bounds`` (``[earliest, latest)``, one whole century, which the schema's pattern
    states).

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
        if bounds is not None:
            # The schema says which years pass (API-04: a generator then sends only those).
            self._spectacular_annotation = {
                "field": {"type": "string", "format": "date-time", "pattern": _years(bounds)}
            }

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
        if self.bounds is not None:
            # The date as written is what the schema's pattern sees: 2000-01-01T00:30+01:00
            # passes, though it is 1999 in UTC.
            earliest, latest = (bound.replace(tzinfo=None) for bound in self.bounds)
            if not earliest <= parsed.replace(tzinfo=None) < latest:
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
