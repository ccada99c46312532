"""Streaming exports of the sealed trail: CSV, JSON lines, FHIR R4 NDJSON.

An export is planned first (``export_plan``: seal, then fix the chain head it goes up to), then
streamed in keyset batches on ``seq`` (``export_chunks``): memory stays flat however long the
trail, and rows appended meanwhile never shift a page. The last line is a signed manifest
(AUD-14): format, filters, count, first and last ``seq``, the chain head, and the SHA-256 of
every byte before it, so the file can be checked offline with the public key.

Each row carries its chain fields (``content_hash``, ``prev_hash``, ``hash``, ``sealed_at``) so
it can be checked against the chain. CSV cells starting with ``= + - @``, tab or CR are prefixed
with ``'`` so a spreadsheet never runs them as formulas (AUD-15); use JSON lines or FHIR for
machine checking.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connection

from audit.canonical import canonical_json, utc_timestamp
from audit.chain import ChainHead, audit_seal
from audit.db import db_now
from audit.fhir import audit_event_resource, provenance_resource
from audit.selectors import EventFilters, sealed_rows
from audit.signing import sign

MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
    "fhir": "application/fhir+ndjson",
}
MANIFEST_TYPE = "telehealth.audit.export"
COLUMNS = (
    "seq",
    "event_id",
    "occurred_at",
    "actor_id",
    "actor_role",
    "actor_label",
    "session_id",
    "action",
    "resource_type",
    "resource_id",
    "patient_id",
    "outcome",
    "source_ip",
    "user_agent",
    "request_id",
    "details",
    "content_hash",
    "prev_hash",
    "hash",
    "sealed_at",
)
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class ExportPlan:
    fmt: str
    filters: EventFilters
    head: ChainHead
    generated_at: str


def export_plan(*, fmt: str, filters: EventFilters) -> ExportPlan:
    """Seal what is committed and fix the head the export goes up to."""
    if fmt not in MEDIA_TYPES:
        raise ValueError(f"unknown export format {fmt!r}")
    head = audit_seal().head
    return ExportPlan(
        fmt=fmt, filters=filters, head=head, generated_at=utc_timestamp(db_now(connection))
    )


def export_record(row: dict[str, Any]) -> dict[str, Any]:
    """One sealed row as exported (JSON lines; CSV renders the same columns)."""
    record = {name: row[name] for name in COLUMNS if name in row}
    record["event_id"] = row["id"]
    record["occurred_at"] = utc_timestamp(row["occurred_at"])
    record["sealed_at"] = utc_timestamp(row["sealed_at"])
    for name in ("actor_id", "session_id", "patient_id"):
        record[name] = str(row[name]) if row[name] is not None else None
    return {name: record[name] for name in COLUMNS}


def neutralise(cell: str) -> str:
    return "'" + cell if cell.startswith(_FORMULA_PREFIXES) else cell


def _csv_line(cells: list[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()


def _csv_row(record: dict[str, Any]) -> str:
    cells = []
    for name in COLUMNS:
        value = record[name]
        if value is None:
            cells.append("")
        elif name == "details":
            cells.append(neutralise(canonical_json(value).decode()))
        else:
            cells.append(neutralise(str(value)))
    return _csv_line(cells)


def _json_line(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True) + "\n"


def _line(fmt: str, row: dict[str, Any]) -> str:
    if fmt == "fhir":
        return _json_line(audit_event_resource(row))
    record = export_record(row)
    return _csv_row(record) if fmt == "csv" else _json_line(record)


def _manifest_line(plan: ExportPlan, manifest: dict[str, Any]) -> str:
    if plan.fmt == "jsonl":
        return _json_line({"manifest": manifest})
    if plan.fmt == "csv":
        return _csv_line(["#manifest", json.dumps(manifest, sort_keys=True)])
    data = base64.b64encode(canonical_json(manifest)).decode()
    return _json_line(
        provenance_resource(manifest=manifest, recorded=plan.generated_at, data_b64=data)
    )


def export_chunks(plan: ExportPlan, *, batch_size: int = 2000) -> Iterator[bytes]:
    """The export's bytes, one batch of rows at a time, then the signed manifest line."""
    digest = hashlib.sha256()
    count, first_seq, last_seq, after = 0, None, None, 0
    if plan.fmt == "csv":
        header = _csv_line(list(COLUMNS)).encode()
        digest.update(header)
        yield header
    while True:
        rows = sealed_rows(
            after_seq=after, limit=batch_size, upto_seq=plan.head.seq, filters=plan.filters
        )
        if not rows:
            break
        chunk = "".join(_line(plan.fmt, row) for row in rows).encode()
        digest.update(chunk)
        yield chunk
        count += len(rows)
        first_seq = first_seq if first_seq is not None else rows[0]["seq"]
        last_seq = after = rows[-1]["seq"]
        if len(rows) < batch_size:
            break
    manifest = sign(
        {
            "type": MANIFEST_TYPE,
            "v": 1,
            "format": plan.fmt,
            "filters": plan.filters.as_details(),
            "count": count,
            "first_seq": first_seq,
            "last_seq": last_seq,
            "head": {"seq": plan.head.seq, "hash": plan.head.hash},
            "body_sha256": digest.hexdigest(),
            "generated_at": plan.generated_at,
        }
    )
    yield _manifest_line(plan, manifest).encode()
