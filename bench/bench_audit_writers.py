"""Sustained audit writes on PostgreSQL from 8 concurrent writers, with the sealer running
alongside, and the chain verifying afterwards (goal: at least 5,000 events/s).

Uses its own database (``bench_audit_writers``, recreated each run). For each transaction size
in ``--batches`` (default 1 and 10: a single read's row, a list page's rows) two phases of
``--seconds`` each:

- **baseline**: the same number of writer processes run the very INSERT the trail uses, with
  the same values, straight through psycopg over the same protocol as the audit phase, with no
  Django, no audit code and no sealer. It is what this machine can commit at that transaction
  size, measured in the same run.
- **audit**: each writer commits through ``audit_record_many`` (one INSERT, its own
  transaction, as a request does), while a further process seals as ``audit_seal --loop``
  does (a round, then ``--seal-interval`` seconds of rest, default the job's 1 s).

The protocol follows ``DATABASE_PREPARED_STATEMENTS`` as the application does, on unless the
environment says otherwise: prepared (server-side binding, the INSERT prepared once per
connection, binary results) or, with ``DATABASE_PREPARED_STATEMENTS=0``, client-side binding
over the simple query protocol (what a transaction pooler needs). Every process runs with
``DEBUG`` off, as production does (``open_database`` turns it off whatever ``DJANGO_DEBUG``
says, so Django keeps no query log).

The baseline's rows are sealed (untimed) and the audit tables analysed before the audit phase
starts: the database is new, and a table PostgreSQL has never analysed has no statistics, so the
planner guesses and the sealer's straggler search (``audit.chain._pending_events``) reads the
whole sealed trail every round; autovacuum analyses a live trail long before it holds this many
rows (and then the txid index serves that search). At the end the rest is sealed and the whole
chain verified. Prints one JSON line.

    DJANGO_DEBUG=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/telehealth \\
        python bench/bench_audit_writers.py [--writers 8] [--batches 1,10] [--seconds 15] \\
            [--seal-interval 1]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_audit_db import open_database

DETAILS = {"route": "api/v1/bookings", "method": "GET", "count": 1}


def _wait_until(moment: float) -> None:
    while time.time() < moment:
        time.sleep(0.001)


def _prepared() -> bool:
    from django.db import connection

    return connection.settings_dict["OPTIONS"].get("prepare_threshold") is not None


def _bare_write(n: int, batch: int, start: float, stop: float, counts: Any) -> None:
    import psycopg

    from audit.db import insert_sql

    row = [None, "", "system", None, "list", "scheduling.booking", f"b{n}", None, "allowed"]
    row += ["", "", "", json.dumps(DETAILS)]
    params = row * batch
    statement = insert_sql("postgresql", batch)
    prepared = _prepared()
    url = os.environ["DATABASE_URL"]
    with psycopg.connect(url, autocommit=True, prepare_threshold=0 if prepared else None) as conn:
        cursor = conn.cursor(binary=True) if prepared else psycopg.ClientCursor(conn)
        _wait_until(start)
        written = 0
        while time.time() < stop:
            cursor.execute(statement, params)
            cursor.fetchall()
            written += batch
    counts[n] = written


def _audit_write(n: int, batch: int, start: float, stop: float, counts: Any) -> None:
    from django.db import connection

    from audit.services import EventDraft, audit_record_many, origin_of

    origin = origin_of(actor_label="system")
    drafts = [
        EventDraft(
            action="list",
            resource_type="scheduling.booking",
            resource_id=f"w{n}-{i}",
            details=DETAILS,
        )
        for i in range(batch)
    ]
    _wait_until(start)
    written = 0
    while time.time() < stop:  # one INSERT statement, its own transaction, as a read's rows
        audit_record_many(drafts=drafts, origin=origin)
        written += batch
    counts[n] = written
    connection.close()


def _seal(start: float, stop: float, interval: float, sealed: Any) -> None:
    from django.db import connection

    from audit.chain import audit_seal

    _wait_until(start)
    total = 0
    while time.time() < stop:
        total += audit_seal().sealed
        time.sleep(max(0.0, min(interval, stop - time.time())))
    sealed.value = total
    connection.close()


def _phase(writer: Any, *, writers: int, batch: int, seconds: float, seal: float | None) -> dict:
    """Run ``writers`` processes of ``writer`` (and the sealer, unless ``seal`` is None)."""
    context = multiprocessing.get_context("fork")
    counts = context.Array("q", writers)
    sealed = context.Value("q", 0)
    start = time.time() + 1.0
    stop = start + seconds
    processes = [
        context.Process(target=writer, args=(n, batch, start, stop, counts)) for n in range(writers)
    ]
    if seal is not None:
        processes.append(context.Process(target=_seal, args=(start, stop, seal, sealed)))
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    written = sum(counts)
    figures = {"events": written, "events_per_s": round(written / seconds)}
    return figures if seal is None else {**figures, "sealed_while_writing": sealed.value}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--batches", default="1,10")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--seal-interval", type=float, default=1.0)
    args = parser.parse_args()
    os.environ.setdefault("DATABASE_PREPARED_STATEMENTS", "1")
    open_database("bench_audit_writers", fresh=True)

    from django.db import connection, connections

    from audit.chain import audit_seal
    from audit.models import AuditEvent
    from audit.verify import chain_verify

    runs = []
    for batch in (int(b) for b in args.batches.split(",")):
        connections.close_all()  # each process opens its own
        common = {"writers": args.writers, "batch": batch, "seconds": args.seconds}
        baseline = _phase(_bare_write, **common, seal=None)
        audit_seal()
        with connection.cursor() as cursor:  # as autovacuum has by now on a live trail
            cursor.execute("ANALYZE audit_event, audit_seal")
        connections.close_all()
        audited = _phase(_audit_write, **common, seal=args.seal_interval)
        runs.append(
            {
                "events_per_transaction": batch,
                "baseline_events_per_s": baseline["events_per_s"],
                **audited,
                "vs_baseline": round(audited["events_per_s"] / baseline["events_per_s"], 3),
                "goal_met": audited["events_per_s"] >= 5000,
            }
        )

    begin = time.perf_counter()
    sealed_after = audit_seal().sealed
    seal_rest_s = time.perf_counter() - begin
    begin = time.perf_counter()
    report = chain_verify()
    verify_s = time.perf_counter() - begin
    print(
        json.dumps(
            {
                "bench": "audit_writers",
                "writers": args.writers,
                "protocol": "prepared" if _prepared() else "client-side binding",
                "seconds": args.seconds,
                "seal_interval_s": args.seal_interval,
                "runs": runs,
                "sealed_after": sealed_after,
                "seal_rest_s": round(seal_rest_s, 2),
                "rows": AuditEvent.objects.count(),
                "verify_ok": report.ok,
                "verify_s": round(verify_s, 2),
                "summary": report.summary()[:100],
                "goal_events_per_s": 5000,
            }
        )
    )


if __name__ == "__main__":
    main()
