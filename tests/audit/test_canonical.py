"""AUD-12: the canonical encoding of an event, and so its hashes, never drift."""

from __future__ import annotations

import hashlib
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from audit.canonical import (
    EVENT_COLUMNS,
    EVENT_FIELDS,
    canonical_json,
    content_hash,
    event_content,
    link_hash,
)

ROW = {
    "id": 42,
    "occurred_at": datetime(2026, 3, 29, 1, 30, 5, 123456, tzinfo=UTC),
    "actor_id": uuid.UUID("5f0c2e8e-6c1f-4f5e-9a52-0b8f8d6f2a11"),
    "actor_role": "therapist",
    "actor_label": "",
    "session_id": None,
    "action": "read",
    "resource_type": "scheduling.booking",
    "resource_id": "b0b5d6d0-0000-4000-8000-000000000001",
    "patient_id": uuid.UUID("0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"),
    "outcome": "allowed",
    "source_ip": "203.0.113.7",
    "user_agent": "Caf\u00e9Browser/1.0",
    "request_id": "req-0001",
    "details": {"route": "api/v1/bookings/<uuid:pk>", "fields": ["start", "end"], "count": 2},
}
# Frozen: a change here means every chain ever written stops verifying. Keys in jsonb order
# (UTF-8 length, then bytes), separators ", " and ": ", so PostgreSQL writes the same bytes.
GOLDEN_BYTES = (
    '{"v": 1, "id": 42, "action": "read", "details": {"count": 2, "route": '
    '"api/v1/bookings/<uuid:pk>", "fields": ["start", "end"]}, "outcome": "allowed", '
    '"actor_id": "5f0c2e8e-6c1f-4f5e-9a52-0b8f8d6f2a11", "source_ip": "203.0.113.7", '
    '"actor_role": "therapist", "patient_id": "0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b", '
    '"request_id": "req-0001", "session_id": null, "user_agent": "Caf\u00e9Browser/1.0", '
    '"actor_label": "", "occurred_at": "2026-03-29T01:30:05.123456Z", '
    '"resource_id": "b0b5d6d0-0000-4000-8000-000000000001", "resource_type": "scheduling.booking"}'
).encode()
GOLDEN_CONTENT = "8f2aa523c722b7bebd5f929a253c32fef2e126bf034f33b60c53d6ba0d1a2a66"
GOLDEN_LINK = "dc447a5825efefe58ee15d6bd84f020375ab6503c5ca76b41c14655ea41388e1"


def test_aud_12_same_event_gives_the_same_golden_bytes_and_hashes() -> None:
    assert canonical_json(event_content(ROW)) == GOLDEN_BYTES
    assert hashlib.sha256(GOLDEN_BYTES).hexdigest() == GOLDEN_CONTENT == content_hash(ROW)
    sealed_at = datetime(2026, 3, 29, 1, 30, 6, tzinfo=UTC)
    link = link_hash(prev_hash="0" * 64, seq=1, content_hash=GOLDEN_CONTENT, sealed_at=sealed_at)
    assert link == GOLDEN_LINK


def test_aud_12_key_order_does_not_matter() -> None:
    reordered = dict(reversed(list(ROW.items())))
    reordered["details"] = dict(reversed(list(ROW["details"].items())))
    assert content_hash(reordered) == content_hash(ROW)


def test_aud_12_unicode_forms_hash_alike() -> None:
    decomposed = {**ROW, "user_agent": unicodedata.normalize("NFD", ROW["user_agent"])}
    assert decomposed["user_agent"] != ROW["user_agent"]
    assert content_hash(decomposed) == content_hash(ROW)


def test_aud_12_times_are_utc_whatever_the_offset() -> None:
    elsewhere = ROW["occurred_at"].astimezone(timezone(timedelta(hours=-7)))
    assert content_hash({**ROW, "occurred_at": elsewhere}) == content_hash(ROW)


def test_aud_12_uuid_spellings_hash_alike() -> None:
    spelled = {**ROW, "actor_id": ROW["actor_id"].hex, "patient_id": str(ROW["patient_id"]).upper()}
    assert content_hash(spelled) == content_hash(ROW)


def test_aud_12_encoding_sorts_keys_by_length_then_bytes_with_fixed_separators() -> None:
    value = {"bb": {"z": 1, "y": []}, "b": 1, "a": ["é", None, True], "aa": {}}
    expected = '{"a": ["é", null, true], "b": 1, "aa": {}, "bb": {"y": [], "z": 1}}'
    assert canonical_json(value) == expected.encode()


def test_aud_12_floats_and_naive_times_are_refused() -> None:
    with pytest.raises(TypeError):
        canonical_json({"ratio": 0.5})
    with pytest.raises(ValueError):
        content_hash({**ROW, "occurred_at": datetime(2026, 1, 1)})


def test_aud_12_any_field_changes_the_hash() -> None:
    for name, value in [("action", "update"), ("outcome", "denied"), ("details", {}), ("id", 43)]:
        assert content_hash({**ROW, name: value}) != content_hash(ROW), name


@pytest.mark.postgres
@pytest.mark.django_db
def test_aud_12_postgresql_computes_the_very_same_hashes() -> None:
    """The sealer and verify hash in SQL on PostgreSQL: both implementations must agree, on
    awkward text too (combining marks, quotes, backslashes, controls, emoji, key orders)."""
    from django.db import connection

    from audit.canonical import content_hash_sql, content_mismatch_sql, link_hash_sql
    from audit.models import AuditEvent
    from audit.selectors import raw_rows

    event = AuditEvent.objects.create(
        action='re\u0301ad "q" \\\\ \x01 \u00e9',
        actor_id=ROW["actor_id"],
        user_agent="Moz\u2028illa\x7f \U0001f600",
        request_id="",
        details={
            "zz": 1,
            "a": [1, "b\u0301", {"yy": None, "x": True, "": -5}],
            "\u00e9bc": "e\u0301",
            "e\u0301": 2,
            "nested": {"deeper": {"k": [[], {}]}},
        },
    )
    [row] = raw_rows(
        AuditEvent.objects.filter(pk=event.pk).values_list(*EVENT_FIELDS), EVENT_FIELDS
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {content_hash_sql('e')} FROM audit_event e WHERE e.id = %s",  # noqa: S608
            [event.pk],
        )
        in_sql = cursor.fetchone()[0]
        sealed_at = ROW["occurred_at"]
        link_sql = link_hash_sql(prev="%s", seq="%s::bigint", content="%s", sealed_at="%s")
        cursor.execute(f"SELECT {link_sql}", [7, "a" * 64, in_sql, sealed_at])
        link_in_sql = cursor.fetchone()[0]
        mismatch = content_mismatch_sql("e", "%s")
        checks = f"SELECT {mismatch}, {mismatch} FROM audit_event e WHERE e.id = %s"  # noqa: S608
        cursor.execute(checks, [in_sql, in_sql, "0" * 64, "0" * 64, event.pk])
        assert cursor.fetchone() == (False, True)
    assert in_sql == content_hash(row)
    assert link_in_sql == link_hash(
        prev_hash="a" * 64, seq=7, content_hash=in_sql, sealed_at=sealed_at
    )


def test_the_event_columns_are_the_models_stored_columns_but_the_transaction_id() -> None:
    """``EVENT_FIELDS`` is the one list of an event's columns (the INSERT, the hash, exports
    and the review API take theirs from it): a column added to ``AuditEvent`` and not to it, or
    the other way round, fails here."""
    from audit.models import AuditEvent

    stored = [f.attname for f in AuditEvent._meta.concrete_fields if f.attname != "txid"]
    assert list(EVENT_FIELDS) == stored
    assert EVENT_FIELDS == ("id", "occurred_at", *EVENT_COLUMNS)
