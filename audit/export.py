"""Streaming exports of the sealed trail: CSV, JSON lines, FHIR R4 NDJSON.

An export is planned first (``export_plan``: seal, then fix the chain head it goes up to), then
streamed in keyset batches on ``seq`` (``export_body``): memory stays flat however long the
trail, and rows appended meanwhile never shift a page. A signed manifest (AUD-14) gives the
format, filters, count, first and last ``seq``, the chain head, and the SHA-256 of the body, so
the file can be checked offline with the public key. In CSV and JSON lines it is the last line
(``export_chunks``). FHIR Bulk Data keeps one resource type per file, so the FHIR NDJSON is
AuditEvent lines only and its manifest is a separate Provenance resource
(``export_provenance``): the body is a pure function of the filters and the head ``seq``, so the
manifest can be derived again later from those alone (``export_plan(upto_seq=...)``).

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
from dataclasses import dataclass, field
from typing import Any

from django.db import connection

from api.errors import NotFoundError
from audit.canonical import EVENT_FIELDS, canonical_json, utc_timestamp
from audit.chain import ChainHead, audit_seal, chain_head
from audit.db import db_now
from audit.fhir import audit_event_resource, provenance_resource
from audit.models import AuditSeal
from audit.selectors import EventFilters, sealed_rows
from audit.signing import sign

MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
    "fhir": "application/fhir+ndjson",
}
# The same, without parameters, as the OpenAPI document names them.
SCHEMA_MEDIA_TYPES = {fmt: media.split(";")[0] for fmt, media in MEDIA_TYPES.items()}
MANIFEST_TYPE = "telehealth.audit.export"
# The event's columns (``EVENT_FIELDS``, its id as ``event_id``) between its place in the chain
# and its seal.
COLUMNS = (
    "seq",
    "event_id",
    *EVENT_FIELDS[1:],
    "content_hash",
    "prev_hash",
    "hash",
    "sealed_at",
)
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
PROVENANCE_MEDIA_TYPE = "application/fhir+json"


class UnknownHead(NotFoundError):
    code = "unknown_chain_head"
    default_detail = "No sealed event has this seq: give the seq of an export's chain head."


@dataclass(frozen=True)
class ExportPlan:
    fmt: str
    filters: EventFilters
    head: ChainHead
    generated_at: str


def _head_at(seq: int) -> ChainHead:
    link = AuditSeal.objects.filter(seq=seq).values_list("hash", flat=True).first()
    if link is not None:
        return ChainHead(seq=seq, hash=link)
    head = chain_head()  # none left at or after an archive cut: the cut, or genesis
    if head.seq == seq:
        return head
    raise UnknownHead()


def export_plan(*, fmt: str, filters: EventFilters, upto_seq: int | None = None) -> ExportPlan:
    """Seal what is committed and fix the head the export goes up to.

    With ``upto_seq`` (the head of an earlier export), plan that export again without sealing:
    the same filters and head give the same rows, so the same body (``UnknownHead`` when no
    link has that ``seq``). Rows archived and removed since then are gone from it, and its
    digest then no longer matches the first export's.
    """
    if fmt not in MEDIA_TYPES:
        raise ValueError(f"unknown export format {fmt!r}")
    head = audit_seal().head if upto_seq is None else _head_at(upto_seq)
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


@dataclass
class ExportTally:
    """What the manifest says of a body, counted while it is produced."""

    digest: Any = field(default_factory=hashlib.sha256)
    count: int = 0
    first_seq: int | None = None
    last_seq: int | None = None


def _manifest_line(plan: ExportPlan, manifest: dict[str, Any]) -> str:
    if plan.fmt == "jsonl":
        return _json_line({"manifest": manifest})
    return _csv_line(["#manifest", json.dumps(manifest, sort_keys=True)])


def export_body(plan: ExportPlan, tally: ExportTally, *, batch_size: int = 2000) -> Iterator[bytes]:
    """The export's rows (CSV: after its header), one batch at a time, counted into ``tally``."""
    after = 0
    if plan.fmt == "csv":
        header = _csv_line(list(COLUMNS)).encode()
        tally.digest.update(header)
        yield header
    while True:
        rows = sealed_rows(
            after_seq=after, limit=batch_size, upto_seq=plan.head.seq, filters=plan.filters
        )
        if not rows:
            break
        chunk = "".join(_line(plan.fmt, row) for row in rows).encode()
        tally.digest.update(chunk)
        yield chunk
        tally.count += len(rows)
        if tally.first_seq is None:
            tally.first_seq = rows[0]["seq"]
        tally.last_seq = after = rows[-1]["seq"]
        if len(rows) < batch_size:
            break


def export_manifest(plan: ExportPlan, tally: ExportTally) -> dict[str, Any]:
    """The signed manifest of a body counted into ``tally``."""
    return sign(
        {
            "type": MANIFEST_TYPE,
            "v": 1,
            "format": plan.fmt,
            "filters": plan.filters.as_details(),
            "count": tally.count,
            "first_seq": tally.first_seq,
            "last_seq": tally.last_seq,
            "head": {"seq": plan.head.seq, "hash": plan.head.hash},
            "body_sha256": tally.digest.hexdigest(),
            "generated_at": plan.generated_at,
        }
    )


def export_chunks(plan: ExportPlan, *, batch_size: int = 2000) -> Iterator[bytes]:
    """The export's bytes: CSV and JSON lines end with their signed manifest line; FHIR is
    AuditEvent NDJSON only (its manifest: ``export_provenance``)."""
    tally = ExportTally()
    yield from export_body(plan, tally, batch_size=batch_size)
    if plan.fmt != "fhir":
        yield _manifest_line(plan, export_manifest(plan, tally)).encode()


def export_provenance(
    plan: ExportPlan, tally: ExportTally | None = None, *, batch_size: int = 2000
) -> dict[str, Any]:
    """The signed manifest of a FHIR export as a Provenance resource (signature ``data``: the
    base64 of the manifest's canonical JSON). Given no ``tally`` of a body just written, it
    produces the body again, in the same keyset batches, to count and hash it."""
    if tally is None:
        tally = ExportTally()
        for _ in export_body(plan, tally, batch_size=batch_size):
            pass
    manifest = export_manifest(plan, tally)
    data = base64.b64encode(canonical_json(manifest)).decode()
    return provenance_resource(manifest=manifest, recorded=plan.generated_at, data_b64=data)
