"""Base serializers shared by every app."""

from __future__ import annotations

from typing import Any

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


class ProblemFieldErrorSerializer(serializers.Serializer):
    field = serializers.CharField()
    code = serializers.CharField()
    message = serializers.CharField()


class ProblemSerializer(serializers.Serializer):
    """An RFC 9457 problem document (api/errors.py), described for the OpenAPI schema."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    code = serializers.CharField()
    instance = serializers.CharField(required=False)
    request_id = serializers.CharField(required=False)
    retry_after = serializers.IntegerField(required=False)

    def get_fields(self) -> dict[str, serializers.Field]:
        # "errors" (field-level details) would shadow Serializer.errors as a class attribute.
        fields = super().get_fields()
        fields["errors"] = ProblemFieldErrorSerializer(many=True, required=False)
        return fields


def problem_responses(*statuses: int) -> dict[tuple[int, str], Any]:
    """``extend_schema(responses=...)`` entries: each status answered with a problem document."""
    return {
        (code, PROBLEM_CONTENT_TYPE): OpenApiResponse(ProblemSerializer, description="Problem")
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
