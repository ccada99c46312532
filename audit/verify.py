"""Checking the whole chain: OK, or the first broken ``seq`` and why (AUD-10).

Kinds of break, in the order they are looked for at each link:

- ``deleted``: a ``seq`` is missing (the link or its event was removed), or history before the
  first link is gone without a signed archive checkpoint at the cut.
- ``inserted``: a link that does not belong: removing it heals the chain; or an event sealed
  long after it claims to have happened (back-dated, ``AUDIT_SEAL_MAX_LAG_SECONDS``).
- ``reordered``: two neighbouring links (or their events) swapped places.
- ``altered``: an event's content, or a link's hashes, changed after sealing.
- ``truncated``: a signed head names a ``seq`` beyond the end of the chain.
- ``rewritten``: the chain is internally consistent but differs from a signed head at its
  ``seq`` (the whole chain was recomputed), or a stored checkpoint's signature is invalid.

Events not sealed yet are counted, not judged: the sealer has not reached them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Max, Min

from audit.canonical import (
    GENESIS_HASH,
    content_hash,
    content_mismatch_sql,
    link_hash,
    link_hash_sql,
)
from audit.chain import ChainHead
from audit.db import db_now
from audit.models import AuditCheckpoint, AuditEvent, AuditSeal
from audit.selectors import sealed_rows
from audit.signing import verify as signature_valid


@dataclass(frozen=True)
class Break:
    seq: int
    kind: str
    detail: str


@dataclass
class VerifyReport:
    sealed: int = 0
    first_seq: int = 0
    head: ChainHead = field(default_factory=lambda: ChainHead(seq=0, hash=GENESIS_HASH))
    unsealed: int = 0
    heads_checked: int = 0
    broken: Break | None = None

    @property
    def ok(self) -> bool:
        return self.broken is None

    def summary(self) -> str:
        if self.broken is not None:
            b = self.broken
            return f"BROKEN at seq {b.seq}: {b.kind} ({b.detail})"
        return (
            f"OK: {self.sealed} sealed events, seq {self.first_seq}..{self.head.seq}, "
            f"head {self.head.hash}; {self.heads_checked} signed heads matched; "
            f"{self.unsealed} events not sealed yet"
        )


class _Broken(Exception):
    def __init__(self, seq: int, kind: str, detail: str):
        super().__init__(detail)
        self.found = Break(seq=seq, kind=kind, detail=detail)


def _rows(chunk_size: int, after: int) -> Iterator[dict[str, Any]]:
    while True:
        rows = sealed_rows(after_seq=after, limit=chunk_size)
        yield from rows
        if len(rows) < chunk_size:
            return
        after = rows[-1]["seq"]


def _signed_heads(extra: Sequence[Mapping[str, Any]]) -> dict[int, list[str]]:
    """seq → hashes that signed heads (stored checkpoints and ``extra``) vouch for."""
    wanted: dict[int, list[str]] = {}
    stored = AuditCheckpoint.objects.order_by("seq").values_list("seq", "hash", "document")
    for seq, hash_, document in stored:
        if not signature_valid(document) or document.get("seq") != seq:
            raise _Broken(seq, "rewritten", "a stored checkpoint's signature does not verify")
        if document.get("hash") != hash_:
            raise _Broken(seq, "rewritten", "a stored checkpoint differs from what was signed")
        wanted.setdefault(seq, []).append(hash_)
    for document in extra:
        if not signature_valid(document):
            raise _Broken(int(document.get("seq") or 0), "rewritten", "a head's signature fails")
        wanted.setdefault(int(document["seq"]), []).append(str(document["hash"]))
    return wanted


def _anchor(first_seq: int, wanted: dict[int, list[str]]) -> str:
    """The hash the first remaining link must follow (the genesis, or an archive cut)."""
    if first_seq == 1:
        return GENESIS_HASH
    cut = (
        AuditCheckpoint.objects.filter(kind=AuditCheckpoint.Kind.ARCHIVE, seq=first_seq - 1)
        .values_list("hash", flat=True)
        .first()
    )
    if cut is None:
        raise _Broken(
            1,
            "deleted",
            f"seq 1..{first_seq - 1} are missing and no signed archive checkpoint marks the cut",
        )
    wanted.setdefault(first_seq - 1, []).append(cut)
    return cut


def _classify_link(
    row: dict[str, Any],
    prev: dict[str, Any] | None,
    expected: str,
    following: dict[str, Any] | None,
) -> None:
    seq = row["seq"]
    digest = content_hash(row)
    if digest != row["content_hash"]:
        if following is not None and following["content_hash"] == digest:
            raise _Broken(seq, "reordered", f"the events of seq {seq} and {seq + 1} swapped")
        raise _Broken(seq, "altered", f"event {row['id']} differs from what was sealed")
    if row["prev_hash"] != expected:
        if following is not None and row["prev_hash"] == following["hash"]:
            raise _Broken(seq, "reordered", f"the links at seq {seq} and {seq + 1} swapped")
        if prev is not None and row["prev_hash"] == prev["prev_hash"]:
            raise _Broken(prev["seq"], "inserted", f"seq {prev['seq']} was put in afterwards")
        if following is not None and following["prev_hash"] == expected:
            raise _Broken(seq, "inserted", f"seq {seq} was put in afterwards")
        sealed_later = link_hash(
            prev_hash=row["prev_hash"], seq=seq + 1, content_hash=digest, sealed_at=row["sealed_at"]
        )
        if sealed_later == row["hash"]:
            raise _Broken(
                seq, "deleted", "a link before this one was removed and the rest renumbered"
            )
        raise _Broken(seq, "altered", "the link does not follow its predecessor")
    recomputed = link_hash(
        prev_hash=row["prev_hash"], seq=seq, content_hash=digest, sealed_at=row["sealed_at"]
    )
    if recomputed != row["hash"]:
        raise _Broken(seq, "altered", "the link's hash does not match its contents")
    lag = row["sealed_at"] - row["occurred_at"]
    if lag > timedelta(seconds=settings.AUDIT_SEAL_MAX_LAG_SECONDS):
        raise _Broken(
            seq,
            "inserted",
            f"back-dated: sealed {int(lag.total_seconds())} s after the time it claims",
        )
    if lag < timedelta(seconds=-1):
        raise _Broken(seq, "inserted", "dated after it was sealed")


def _walk(
    report: VerifyReport, wanted: dict[int, list[str]], chunk_size: int, *, after: int = 0
) -> None:
    """Check every link in Python from the one after ``after`` (0: from the start)."""
    prev: dict[str, Any] | None = None
    expected = ""
    if after:
        prev = sealed_rows(after_seq=after - 1, limit=1)[0]
        expected, after = prev["hash"], prev["seq"]
    row: dict[str, Any] | None = None
    for following in _rows(chunk_size, after):
        if row is not None:
            _check(report, row, prev, expected, following, wanted)
            prev, expected = row, row["hash"]
        elif prev is None:
            report.first_seq = following["seq"]
            expected = _anchor(report.first_seq, wanted)
        row = following
    if row is not None:
        _check(report, row, prev, expected, None, wanted)


def _check(
    report: VerifyReport,
    row: dict[str, Any],
    prev: dict[str, Any] | None,
    expected: str,
    following: dict[str, Any] | None,
    wanted: dict[int, list[str]],
) -> None:
    seq = row["seq"]
    if prev is not None and seq != prev["seq"] + 1:
        missing = f"{prev['seq'] + 1}" + (f"..{seq - 1}" if seq - 1 > prev["seq"] + 1 else "")
        raise _Broken(prev["seq"] + 1, "deleted", f"seq {missing} missing")
    _classify_link(row, prev, expected, following)
    for signed in wanted.get(seq, ()):
        if signed != row["hash"]:
            raise _Broken(seq, "rewritten", "the chain differs from a signed head at this seq")
        report.heads_checked += 1
    report.sealed += 1
    report.head = ChainHead(seq=seq, hash=row["hash"])


def _first_suspect(first: int, last: int) -> int | None:
    """PostgreSQL: the first seq whose link fails any check, computed by the database itself
    (the same hashes as ``audit.canonical``, in SQL) in one pass it may run in parallel."""
    mismatch = content_mismatch_sql("e", "s.content_hash")
    link = link_hash_sql(
        prev="s.prev_hash", seq="s.seq", content="s.content_hash", sealed_at="s.sealed_at"
    )
    sql = f"""
        SELECT min(s.seq) FROM audit_seal s
        LEFT JOIN audit_event e ON e.id = s.event_id
        LEFT JOIN audit_seal p ON p.seq = s.seq - 1
        WHERE s.seq >= %s AND s.seq <= %s AND (
            e.id IS NULL
            OR {mismatch}
            OR {link} IS DISTINCT FROM s.hash
            OR (s.seq > %s AND (p.seq IS NULL OR s.prev_hash IS DISTINCT FROM p.hash))
            OR s.sealed_at - e.occurred_at > make_interval(secs => %s)
            OR e.occurred_at - s.sealed_at > interval '1 second'
        )
    """  # noqa: S608 - only expressions of our own, values are parameters
    lag = settings.AUDIT_SEAL_MAX_LAG_SECONDS
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")  # compiling the hash expressions costs more
        cursor.execute(sql, [first, last, first, lag])
        found = cursor.fetchone()[0]
    return None if found is None else int(found)


def _verify_in_database(
    report: VerifyReport, wanted: dict[int, list[str]], chunk_size: int
) -> None:
    bounds = AuditSeal.objects.aggregate(first=Min("seq"), last=Max("seq"), count=Count("seq"))
    if bounds["first"] is None:
        return
    first, last = bounds["first"], bounds["last"]
    [first_row] = sealed_rows(after_seq=first - 1, limit=1)
    suspect = _first_suspect(first, last)
    if first_row["prev_hash"] != _anchor(first, wanted):
        suspect = first
    if suspect is not None:  # the Python walk names it, starting two links before
        before = AuditSeal.objects.filter(seq__lt=suspect).order_by("-seq")
        start = list(before.values_list("seq", flat=True)[:2])
        _walk(report, wanted, chunk_size, after=start[-1] if len(start) == 2 else 0)
    report.first_seq, report.sealed = first, bounds["count"]
    hashes = dict(AuditSeal.objects.filter(seq__in=[last, *wanted]).values_list("seq", "hash"))
    report.head = ChainHead(seq=last, hash=hashes[last])
    for seq, signed in wanted.items():
        if first <= seq <= last:
            for value in signed:
                if value != hashes[seq]:
                    raise _Broken(seq, "rewritten", "the chain differs from a signed head here")
                report.heads_checked += 1


def chain_verify(
    *, heads: Sequence[Mapping[str, Any]] = (), chunk_size: int = 10_000
) -> VerifyReport:
    """Check the whole chain; ``heads`` are signed head documents kept off the box."""
    report = VerifyReport()
    try:
        wanted = _signed_heads(heads)
        if connection.vendor == "postgresql":
            _verify_in_database(report, wanted, chunk_size)
        else:
            _walk(report, wanted, chunk_size)
        for seq in sorted(wanted):
            if seq > report.head.seq:
                raise _Broken(
                    seq,
                    "truncated",
                    f"a signed head names seq {seq}; the chain ends at {report.head.seq}",
                )
        _stale_unsealed(report)
    except _Broken as broken:
        report.broken = broken.found
    report.unsealed = AuditEvent.objects.filter(seal__isnull=True).count()
    return report


def _stale_unsealed(report: VerifyReport) -> None:
    """An event left unsealed past the lag escaped the sealer (or the sealer is not running)."""
    limit = db_now(connection) - timedelta(seconds=settings.AUDIT_SEAL_MAX_LAG_SECONDS)
    stale = (
        AuditEvent.objects.filter(seal__isnull=True, occurred_at__lt=limit)
        .order_by("id")
        .values_list("id", flat=True)
        .first()
    )
    if stale is not None:
        raise _Broken(
            report.head.seq + 1,
            "inserted",
            f"event {stale} is older than AUDIT_SEAL_MAX_LAG_SECONDS and still unsealed: it "
            "escaped the sealer, or the sealing job is not running",
        )
