"""Sustained audit writes on PostgreSQL from 8 concurrent writers, with the sealer running
alongside, and the chain verifying afterwards (goal: at least 5,000 events/s).

Uses its own database (``bench_audit_writers``, recreated each run). Each writer is a process
committing ``--batch`` events at a time in one INSERT, as a request does (a list touching that
many clients writes that many rows; ``--batch 1`` is a single read's row). A ninth process
seals as the sealing job does (``audit_seal --loop``: a round, then ``--seal-interval`` seconds
of rest, default the job's 1 s). After ``--seconds``, the rest is sealed and the
whole chain verified. Prints one JSON line.

    DJANGO_DEBUG=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/telehealth \\
        python bench/bench_audit_writers.py [--writers 8] [--batch 10] [--seconds 15] \\
            [--seal-interval 1]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_audit_db import open_database


def _write(n: int, batch: int, start: float, stop: float, counts: Any) -> None:
    from django.db import connection

    from audit.services import EventDraft, audit_record_many, origin_of

    origin = origin_of(actor_label="system")
    drafts = [
        EventDraft(
            action="list",
            resource_type="scheduling.booking",
            resource_id=f"w{n}-{i}",
            details={"route": "api/v1/bookings", "method": "GET", "count": 1},
        )
        for i in range(batch)
    ]
    while time.time() < start:
        time.sleep(0.001)
    written = 0
    while time.time() < stop:  # one INSERT statement, its own transaction, as a read's rows
        audit_record_many(drafts=drafts, origin=origin)
        written += batch
    counts[n] = written
    connection.close()


def _seal(start: float, stop: float, interval: float, sealed: Any) -> None:
    from django.db import connection

    from audit.chain import audit_seal

    while time.time() < start:
        time.sleep(0.001)
    total = 0
    while time.time() < stop:
        total += audit_seal().sealed
        time.sleep(max(0.0, min(interval, stop - time.time())))
    sealed.value = total
    connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--seal-interval", type=float, default=1.0)
    args = parser.parse_args()
    open_database("bench_audit_writers", fresh=True)

    from django.db import connections

    from audit.chain import audit_seal
    from audit.models import AuditEvent
    from audit.verify import chain_verify

    connections.close_all()  # each process opens its own
    context = multiprocessing.get_context("fork")
    counts = context.Array("q", args.writers)
    sealed_live = context.Value("q", 0)
    start = time.time() + 1.0
    stop = start + args.seconds
    processes = [
        context.Process(target=_write, args=(n, args.batch, start, stop, counts))
        for n in range(args.writers)
    ]
    processes.append(
        context.Process(target=_seal, args=(start, stop, args.seal_interval, sealed_live))
    )
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    written = sum(counts)

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
                "events_per_transaction": args.batch,
                "seconds": args.seconds,
                "seal_interval_s": args.seal_interval,
                "events": written,
                "events_per_s": round(written / args.seconds),
                "sealed_while_writing": sealed_live.value,
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
