"""A JSON parser that refuses what would otherwise become a 500 further in.

Invalid UTF-8, lone surrogates (``"\\ud800"``: no UTF-8 encoding exists, so rendering or storing
them fails), NaN/Infinity and numbers that overflow to infinity, duplicate keys, NUL characters
(PostgreSQL text cannot hold them) and nesting deeper than ``JSON_MAX_DEPTH`` → 400. Bodies over
``DATA_UPLOAD_MAX_MEMORY_SIZE`` are refused with 413 before any parser runs (Django checks the size
when DRF reads ``request.body``; ``api.errors`` maps that to the problem response).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

_SURROGATE = re.compile("[\ud800-\udfff]")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError("duplicate key")
        out[key] = value
    return out


def _check(value: Any, depth: int) -> None:
    if depth > settings.JSON_MAX_DEPTH:
        raise ValueError("nested too deeply")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("NUL character")
        if _SURROGATE.search(value):
            raise ValueError("lone surrogate")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check(key, depth + 1)
            _check(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check(item, depth + 1)


def strict_json_loads(raw: bytes | str) -> Any:
    """JSON as every entry point takes it (the rules above); ``ValueError`` for anything else,
    including nesting deep enough to exhaust the parser's recursion."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        data = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_no_duplicates,
        )
        _check(data, 0)
    except RecursionError as exc:
        raise ValueError("nested too deeply") from exc
    return data


class StrictJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read() if stream is not None else b""
        try:
            return strict_json_loads(raw)
        except ValueError as exc:  # UnicodeDecodeError is one
            raise ParseError("The body is not valid JSON.", code="invalid_json") from exc
