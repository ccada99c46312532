"""Writes guarded by a unique constraint (session type names, licences)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import IntegrityError, transaction

from api.errors import ConflictError


@contextmanager
def unique_or_conflict(detail: str, *, code: str) -> Iterator[None]:
    """Writes guarded by a unique constraint: a duplicate (also a concurrent one) is a 409."""
    try:
        with transaction.atomic():
            yield
    except IntegrityError as exc:
        raise ConflictError(detail, code=code) from exc
