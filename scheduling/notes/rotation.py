"""Resumable re-encryption of rows under the current field-encryption key (notes, profiles)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import models, transaction

from api import crypto


@dataclass(frozen=True, slots=True)
class RotationReport:
    rotated: int
    remaining: int


def reencrypt_in_batches(
    *,
    model: type[models.Model],
    fields: list[str],
    reencrypt: Callable[[Any], None],
    batch_size: int,
    max_batches: int | None,
) -> RotationReport:
    """Re-encrypt rows of ``model`` whose ``key_id`` is not the current key.

    ``reencrypt(row)`` decrypts the row's ``fields`` and encrypts them again (raising, and so
    writing nothing, when a value cannot be decrypted). Each batch is its own transaction and a
    row's ``key_id`` says which key it is under, so an interrupted run leaves every row readable
    and the next run goes on where it stopped; concurrent runs skip each other's locked rows
    (PostgreSQL)."""
    current = crypto.current_key_id()
    rotated = batches = 0
    while max_batches is None or batches < max_batches:
        with transaction.atomic():
            rows = list(
                model._default_manager.select_for_update(skip_locked=True)
                .exclude(key_id=current)
                .order_by("pk")[:batch_size]
            )
            if not rows:
                break
            for row in rows:
                reencrypt(row)
                row.key_id = current  # type: ignore[attr-defined]
            model._default_manager.bulk_update(rows, [*fields, "key_id"])
        rotated += len(rows)
        batches += 1
    remaining = model._default_manager.exclude(key_id=current).count()
    return RotationReport(rotated=rotated, remaining=remaining)
