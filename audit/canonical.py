"""The canonical encoding of audit events and the hashes of the chain (AUD-12).

One event always encodes to the same bytes, whatever the Python version, the order of keys in
its ``details``, or the Unicode form its strings arrived in. The encoding is JSON written the
way PostgreSQL writes ``jsonb``, so the database can compute the same hashes itself (the sealer
and ``audit_verify`` do, on PostgreSQL, a million rows in seconds):

- object keys sorted by their UTF-8 length, then bytewise (jsonb's order), at every depth;
- separators ``", "`` and ``": "``; strings in UTF-8, escaping only ``"``, ``\\`` and control
  characters (``\\n``-style where JSON has one, else ``\\u00xx``);
- every string (keys too) in Unicode NFC;
- times in UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; UUIDs lower-case with hyphens;
- integers, booleans and null only: a float is refused (its text form is not portable).

``content_hash`` digests one event row; ``link_hash`` chains it to its predecessor
(``prev_hash``, the genesis being 64 zeros) at its sequence number. Both are hex SHA-256.
``CONTENT_HASH_SQL`` and ``LINK_HASH_SQL`` are the same functions in PostgreSQL (tests hold the
two implementations to each other).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

FORMAT_VERSION = 1
GENESIS_HASH = "0" * 64

# The one definition of an audit event's columns (``AuditEvent`` stores them, with ``txid``;
# tests/audit/test_canonical.py compares): those a writer gives, in the order the INSERT binds
# them (``audit.db``)...
EVENT_COLUMNS = (
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
)
# ... and with the two the database makes, those the content hash covers, in the order exports
# (``audit.export``) and the review API (``audit.serializers``) list them.
EVENT_FIELDS = ("id", "occurred_at", *EVENT_COLUMNS)
_TEXT_FIELDS = (
    "actor_role",
    "actor_label",
    "action",
    "resource_type",
    "resource_id",
    "outcome",
    "source_ip",
    "user_agent",
    "request_id",
)
_UUID_FIELDS = ("actor_id", "session_id", "patient_id")


def _key_order(key: str) -> tuple[int, bytes]:
    encoded = key.encode("utf-8")
    return len(encoded), encoded


def nfc(text: str) -> str:
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def normalise(value: Any) -> Any:
    """``value`` with every string in NFC and object keys in canonical order; refuses what has
    no portable JSON form (floats, non-string keys, other types)."""
    if isinstance(value, str):
        return nfc(value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, Mapping):
        items = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"canonical JSON keys must be strings, not {type(key).__name__}")
            items[nfc(key)] = normalise(item)
        return {key: items[key] for key in sorted(items, key=_key_order)}
    if isinstance(value, list | tuple):
        return [normalise(item) for item in value]
    raise TypeError(f"{type(value).__name__} has no canonical form (floats are refused)")


def canonical_json(value: Any) -> bytes:
    return json.dumps(normalise(value), separators=(", ", ": "), ensure_ascii=False).encode()


def utc_timestamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("naive datetimes have no canonical form")
    if moment.utcoffset():
        moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S.%f}Z"


def canonical_uuid(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))


def event_content(row: Mapping[str, Any]) -> dict[str, Any]:
    """The hashed form of one event row (a mapping holding every name in ``EVENT_FIELDS``)."""
    content: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "id": int(row["id"]),
        "occurred_at": utc_timestamp(row["occurred_at"]),
        "details": dict(row["details"] or {}),
    }
    for name in _UUID_FIELDS:
        content[name] = canonical_uuid(row[name])
    for name in _TEXT_FIELDS:
        content[name] = row[name]
    return content


def content_hash(row: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(event_content(row))).hexdigest()


_HEX64 = re.compile(r"[0-9a-f]{64}")


def link_hash(*, prev_hash: str, seq: int, content_hash: str, sealed_at: datetime) -> str:
    """The chain hash of the event sealed at ``seq`` after the one whose hash is ``prev_hash``:
    SHA-256 of the canonical JSON of {v, seq, prev, content, sealed_at}."""
    if _HEX64.fullmatch(prev_hash) and _HEX64.fullmatch(content_hash):
        # The canonical encoding written out: every member is ASCII and needs no escaping.
        text = (
            f'{{"v": {FORMAT_VERSION}, "seq": {int(seq)}, "prev": "{prev_hash}", '
            f'"content": "{content_hash}", "sealed_at": "{utc_timestamp(sealed_at)}"}}'
        )
        return hashlib.sha256(text.encode()).hexdigest()
    link = {
        "v": FORMAT_VERSION,
        "seq": int(seq),
        "prev": prev_hash,
        "content": content_hash,
        "sealed_at": utc_timestamp(sealed_at),
    }
    return hashlib.sha256(canonical_json(link)).hexdigest()


# --- The same, in PostgreSQL (13 or later: normalize(), sha256()) ------------------------------

_UTC_SQL = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"


def _member_sql(name: str, alias: str, *, normalised: bool) -> str:
    column = f"{alias}.{name}"
    if name == "v":
        return str(FORMAT_VERSION)
    if name == "id":
        return f"{column}::text"
    if name == "occurred_at":
        return f"'\"' || {_UTC_SQL.format(column)} || '\"'"
    if name in _UUID_FIELDS:
        return f"coalesce('\"' || {column}::text || '\"', 'null')"
    if name == "details":
        details = f"coalesce({column}, '{{}}'::jsonb)::text"  # jsonb writes canonical JSON
        # After NFC the keys may sort differently: parse again, as Python's normalise does.
        return f"normalize({details}, NFC)::jsonb::text" if normalised else details
    text = f"normalize({column}, NFC)" if normalised else column
    return f"coalesce(to_json({text})::text, 'null')"


_CONTENT_KEYS = sorted(
    ("v", "id", "occurred_at", "details", *_UUID_FIELDS, *_TEXT_FIELDS), key=_key_order
)


def _document_sql(alias: str, *, normalised: bool) -> str:
    members = " || ', ' || ".join(
        f"'\"{name}\": ' || {_member_sql(name, alias, normalised=normalised)}"
        for name in _CONTENT_KEYS
    )
    return f"('{{' || {members} || '}}')"


def _sha256_sql(text: str) -> str:
    return f"encode(sha256(convert_to({text}, 'UTF8')), 'hex')"


def content_hash_sql(alias: str) -> str:
    """SQL computing ``content_hash`` of the ``audit_event`` row ``alias``, the document written
    out member by member. An ASCII document is already NFC and needs no normalising."""
    plain = _document_sql(alias, normalised=False)
    normalised = _document_sql(alias, normalised=True)
    return _sha256_sql(
        f"CASE WHEN octet_length({plain}) = length({plain}) THEN {plain} ELSE {normalised} END"
    )


def content_mismatch_sql(alias: str, stored: str) -> str:
    """SQL true when the row ``alias`` no longer hashes to ``stored``. Rows the application
    wrote are NFC, so the plain document matches and the normalising one is never computed."""
    plain = _sha256_sql(_document_sql(alias, normalised=False))
    normalised = _sha256_sql(_document_sql(alias, normalised=True))
    return f"({plain} IS DISTINCT FROM {stored} AND {normalised} IS DISTINCT FROM {stored})"


def link_hash_sql(*, prev: str, seq: str, content: str, sealed_at: str) -> str:
    """SQL computing ``link_hash`` from the four SQL expressions given."""
    document = (
        f'\'{{"v": {FORMAT_VERSION}, "seq": \' || ({seq})::text'
        f" || ', \"prev\": ' || to_json(({prev})::text)::text"
        f" || ', \"content\": ' || to_json(({content})::text)::text"
        f" || ', \"sealed_at\": \"' || {_UTC_SQL.format(f'({sealed_at})')} || '\"}}'"
    )
    return _sha256_sql(document)
