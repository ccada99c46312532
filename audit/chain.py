"""The hash chain: sealing committed events, chain heads, signed checkpoints.

Writers only INSERT events; they never wait for each other. ``audit_seal`` (a job, run by
``manage.py audit_seal``, and before every export or checkpoint) links the committed, unsealed
events in order, one transaction at a time:

- PostgreSQL: the run takes a transaction-scoped advisory lock (runs never overlap) and seals
  every unsealed event it can see: each is committed (or its own). An event of a transaction
  still running is invisible and sealed by a later run. So ``seq`` has no gaps and no two links
  share a predecessor, however many processes write. Events committing late, below ids already
  sealed, are found from the previous run's horizon (see ``_pending_events``).
- SQLite: writers are serialised by the database, so events commit in ``id`` order; a run seals
  every event above the last sealed one.

Each seal stores the event's content hash, the previous link's hash and its own
(``audit.canonical.link_hash``). Heads are signed (``audit.signing``) and kept as checkpoints so
a chain recomputed from scratch, or cut short, no longer matches them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import Max, Q
from django.db.models.expressions import RawSQL

from audit.canonical import (
    EVENT_FIELDS,
    GENESIS_HASH,
    content_hash,
    content_hash_sql,
    link_hash,
    utc_timestamp,
)
from audit.db import db_now
from audit.models import AuditCheckpoint, AuditEvent, AuditSeal
from audit.selectors import raw_rows
from audit.signing import sign

_SEAL_COLUMNS = "seq, event_id, content_hash, prev_hash, hash, sealed_at, horizon"
_INSERT_SEAL = f"INSERT INTO audit_seal ({_SEAL_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)"  # noqa: S608
# PostgreSQL: a chunk's links in one statement, each column one comma-separated text (a row
# per statement costs the sealer more than hashing does; psycopg's array adapter, quoting each
# element in Python, more than the rest of a run). Every value is an integer or hex digest.
_INSERT_SEALS_PG = (
    f"INSERT INTO audit_seal ({_SEAL_COLUMNS}) "  # noqa: S608
    "SELECT s.seq, s.event_id, s.content_hash, s.prev_hash, s.hash, %s, %s "
    "FROM unnest(string_to_array(%s, ',')::bigint[], string_to_array(%s, ',')::bigint[], "
    "string_to_array(%s, ','), string_to_array(%s, ','), string_to_array(%s, ',')) "
    "AS s(seq, event_id, content_hash, prev_hash, hash)"
)
# pg_advisory_xact_lock key of the sealer (any fixed bigint; "auditsea" in ASCII).
SEAL_LOCK_KEY = 0x6175646974736561
HEAD_DOCUMENT_TYPE = "telehealth.audit.head"


@dataclass(frozen=True)
class ChainHead:
    seq: int
    hash: str


@dataclass(frozen=True)
class SealResult:
    sealed: int
    head: ChainHead


def chain_head() -> ChainHead:
    """The last link; with none left (all archived), the signed archive cut; else genesis."""
    last = AuditSeal.objects.order_by("-seq").values_list("seq", "hash").first()
    if last is None:
        cut = AuditCheckpoint.objects.filter(kind=AuditCheckpoint.Kind.ARCHIVE)
        last = cut.order_by("-seq").values_list("seq", "hash").first()
    return ChainHead(seq=last[0], hash=last[1]) if last else ChainHead(seq=0, hash=GENESIS_HASH)


def _pending_events() -> tuple[list[Any], int | None]:
    """The unsealed events this run seals, as querysets in sealing order, and its horizon.

    Every row this run can see is committed (or its own), so it seals all of them: first the
    stragglers (PostgreSQL only: events below the highest sealed id whose transactions
    committed late, looked for among transactions from the previous run's horizon on), then
    every event above the highest sealed id. The horizon, the snapshot's ``xmin`` read before
    the scan, bounds the next run's straggler search: every older transaction had ended, so its
    events are sealed by this run. Neither query has to look at the sealed part of the trail.
    """
    if connection.vendor != "postgresql":  # one writer at a time: events commit in id order
        highest = AuditSeal.objects.aggregate(highest=Max("event_id"))["highest"] or 0
        return [AuditEvent.objects.filter(id__gt=highest)], None
    with connection.cursor() as cursor:  # the lock first: what follows must see the last run
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SEAL_LOCK_KEY])
        cursor.execute("SET LOCAL jit = off")  # compiling the hash expression costs more
        cursor.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        horizon = cursor.fetchone()[0]
    highest = AuditSeal.objects.aggregate(highest=Max("event_id"))["highest"] or 0
    fresh = AuditEvent.objects.filter(id__gt=highest)
    last = AuditSeal.objects.order_by("-seq").values_list("horizon", flat=True).first()
    stragglers = AuditEvent.objects.filter(id__lte=highest, seal__isnull=True).filter(
        # No txid means the stamping trigger was bypassed: seal it anyway, verify judges it.
        Q(txid__gte=last or 0) | Q(txid__isnull=True)
    )
    return [stragglers, fresh], horizon


def _content_hashes(page: Any, limit: int) -> list[tuple[int, str]]:
    """(id, content hash) of the first ``limit`` events of ``page``: computed by PostgreSQL
    itself there (the same function, in SQL), in Python on SQLite."""
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name("audit_event")
        digest = RawSQL(content_hash_sql(table), ())  # noqa: S611 - our own expression, no input
        return list(page.annotate(digest=digest).values_list("id", "digest")[:limit])
    rows = raw_rows(page.values_list(*EVENT_FIELDS)[:limit], EVENT_FIELDS)
    return [(row["id"], content_hash(row)) for row in rows]


def _links_insert(
    links: list[tuple[int, int, str, str, str]], *, sealed_at: Any, horizon: Any
) -> None:
    """Store a chunk's links ``(seq, event_id, content_hash, prev_hash, hash)``."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            columns = [",".join(map(str, column)) for column in zip(*links, strict=True)]
            cursor.execute(_INSERT_SEALS_PG, [sealed_at, horizon, *columns])
        else:
            cursor.executemany(_INSERT_SEAL, [(*link, sealed_at, horizon) for link in links])


def audit_seal(*, chunk_size: int = 5000) -> SealResult:
    """Link every committed unsealed event into the chain; return how many and the head."""
    with transaction.atomic():
        pending, horizon = _pending_events()
        head = chain_head()
        seq, prev = head.seq, head.hash
        total = 0
        for candidates in pending:
            after = 0
            while digests := _content_hashes(
                candidates.filter(id__gt=after).order_by("id"), chunk_size
            ):
                # Read after the page: every event on it committed, so happened, before this.
                sealed_at = db_now(connection)
                stored_at = connection.ops.adapt_datetimefield_value(sealed_at)
                links = []
                for event_id, digest in digests:
                    seq += 1
                    link = link_hash(
                        prev_hash=prev, seq=seq, content_hash=digest, sealed_at=sealed_at
                    )
                    links.append((seq, event_id, digest, prev, link))
                    prev = link
                _links_insert(links, sealed_at=stored_at, horizon=horizon)
                after, total = digests[-1][0], total + len(digests)
        return SealResult(sealed=total, head=ChainHead(seq=seq, hash=prev))


def head_document(head: ChainHead) -> dict[str, Any]:
    """A signed statement "the chain had this hash at this seq", to keep off the box."""
    return sign(
        {
            "type": HEAD_DOCUMENT_TYPE,
            "v": 1,
            "seq": head.seq,
            "hash": head.hash,
            "signed_at": utc_timestamp(db_now(connection)),
        }
    )


def audit_checkpoint_create(
    *, kind: str = AuditCheckpoint.Kind.CHECKPOINT, seq: int | None = None
) -> AuditCheckpoint:
    """Seal, then sign and store the head (or the link at ``seq``, for an archive cut)."""
    with transaction.atomic():
        head = audit_seal().head
        if seq is not None and seq != head.seq:
            head = ChainHead(
                seq=seq, hash=AuditSeal.objects.values_list("hash", flat=True).get(seq=seq)
            )
        document = head_document(head)
        return AuditCheckpoint.objects.create(
            seq=head.seq, hash=head.hash, kind=kind, document=document
        )
