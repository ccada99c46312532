"""``Idempotency-Key`` on creating POSTs.

The same key from the same actor with the same request replays the stored response; the same
key with a different request is refused with 422 (a multipart body's files count by their name
and a SHA-256 of their content); a retry while the first is still running gets
409. Only successful responses are stored: a refused request changed nothing, so a retry simply
runs again. Stored responses are encrypted, since they may carry protected data.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar, cast

from django.core.files.uploadedfile import UploadedFile
from django.db import connection
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from api import crypto
from api.compiled import insert_rows, update_row
from api.errors import ConflictError, DomainError, UnprocessableError
from api.models import IdempotencyRecord

HEADER = "Idempotency-Key"
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")

F = TypeVar("F", bound=Callable[..., Response])


class InvalidIdempotencyKey(DomainError):
    code = "invalid_idempotency_key"
    title = "Bad request"


class _RequestEncoder(JSONEncoder):
    """An uploaded file as its name, size and SHA-256 (read in chunks, then rewound for the
    view)."""

    def default(self, obj: Any) -> Any:
        if isinstance(obj, UploadedFile):
            digest = hashlib.sha256()
            for chunk in obj.chunks():
                digest.update(chunk)
            obj.seek(0)
            return {"name": obj.name, "size": obj.size, "sha256": digest.hexdigest()}
        return super().default(obj)


def _request_hash(request: Request) -> str:
    canonical = json.dumps(request.data, cls=_RequestEncoder, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{request.method}\n{request.path}\n{canonical}".encode()).hexdigest()


def _aad(actor: str, key: str) -> bytes:
    return f"idempotency\x00{actor}\x00{key}".encode()


def idempotent(view_method: F) -> F:
    """Decorate a DRF view's ``post`` that creates something."""

    @functools.wraps(view_method)
    def wrapper(self: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get(HEADER)
        if key is None:
            return view_method(self, request, *args, **kwargs)
        if not _KEY.match(key):
            raise InvalidIdempotencyKey(
                "Idempotency-Key must be 1 to 255 visible ASCII characters."
            )
        actor = str(request.user.pk) if request.user.is_authenticated else "anonymous"
        request_hash = _request_hash(request)
        record = _claim(
            IdempotencyRecord(
                actor=actor,
                key=key,
                method=request.method or "POST",
                path=request.path[:512],
                request_hash=request_hash,
                created_at=timezone.now(),
            )
        )
        if record is None:
            return _replay(actor=actor, key=key, request_hash=request_hash)

        try:
            response = view_method(self, request, *args, **kwargs)
        except BaseException:
            if not (connection.in_atomic_block and connection.needs_rollback):
                IdempotencyRecord.objects.filter(pk=record.pk).delete()
            # else the transaction's rollback takes the claim with it
            raise
        if 200 <= response.status_code < 300:
            body = json.dumps(response.data, cls=JSONEncoder)
            update_row(
                record,
                status_code=response.status_code,
                response_body=crypto.encrypt(body, associated_data=_aad(actor, key)),
            )
        else:
            IdempotencyRecord.objects.filter(pk=record.pk).delete()
        return response

    wrapper.idempotent = True  # type: ignore[attr-defined]  # read by api.schema
    return cast(F, wrapper)


def _claim(record: IdempotencyRecord) -> IdempotencyRecord | None:
    """Insert the in-progress ``record`` and return it, or None when its (actor, key) is taken.

    One statement (``ON CONFLICT DO NOTHING``, PostgreSQL and SQLite) instead of an INSERT in a
    savepoint that catches the unique violation: two round trips fewer on every keyed request.
    A concurrent first attempt with the same key still makes this one wait for its outcome."""
    return record if insert_rows([record], ignore_conflicts=True) else None


def _replay(*, actor: str, key: str, request_hash: str) -> Response:
    existing = IdempotencyRecord.objects.filter(actor=actor, key=key).first()
    if existing is None:  # the first attempt failed and was removed meanwhile
        raise ConflictError(
            "A request with this Idempotency-Key is being processed; retry.",
            code="idempotency_in_progress",
        )
    if existing.request_hash != request_hash:
        raise UnprocessableError(
            "This Idempotency-Key was already used with a different request.",
            code="idempotency_key_reused",
        )
    if existing.status_code is None:
        raise ConflictError(
            "A request with this Idempotency-Key is being processed; retry.",
            code="idempotency_in_progress",
        )
    data = json.loads(crypto.decrypt(existing.response_body, associated_data=_aad(actor, key)))
    return Response(data, status=existing.status_code, headers={"Idempotency-Replayed": "true"})
