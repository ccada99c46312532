"""Strict helpers that read configuration from the environment.

Every setting comes from here. A secret may be given directly (``NAME``) or as a path to a
file that holds it (``NAME_FILE``), the way container secrets are mounted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "on"}
_FALSE = {"0", "false", "off", ""}


def env_str(name: str, default: str | None = None) -> str | None:
    """The value of ``name``, or the contents of the file named by ``name_FILE``."""
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        return Path(file_path).read_text(encoding="utf-8").strip()
    return os.environ.get(name, default)


def env_required(name: str, *, when: bool, dev_default: str) -> str:
    """A value that production must set; ``dev_default`` is used only when ``when`` is false."""
    value = env_str(name)
    if value:
        return value
    if when:
        raise ImproperlyConfigured(f"{name} must be set in production (or {name}_FILE).")
    return dev_default


def env_bool(name: str, default: bool = False) -> bool:
    """Refuses yes-ish values: only 1/0, true/false, on/off (any case)."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be one of 1/0, true/false, on/off; got {raw!r}.")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer; got {raw!r}.") from exc


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_json(name: str, default: Any = None) -> Any:
    raw = env_str(name)
    if raw is None or raw == "":
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(f"{name} must be valid JSON.") from exc
