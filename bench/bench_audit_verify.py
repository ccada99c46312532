"""``audit_verify`` over a million sealed events on PostgreSQL (goal: under 30 s).

Uses the database of ``bench_audit_db.py`` (loaded and sealed first if needed), then times
``audit.verify.chain_verify`` over the whole chain, plus a stored signed checkpoint, as
``manage.py audit_verify`` runs it. Prints one JSON line.

    DJANGO_DEBUG=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/telehealth \\
        python bench/bench_audit_verify.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_audit_db import open_database, prepare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    open_database()
    prepared = prepare(args.events)

    from audit.chain import audit_checkpoint_create
    from audit.verify import chain_verify

    audit_checkpoint_create()
    start = time.perf_counter()
    report = chain_verify()
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "bench": "audit_verify",
                "events": prepared["events"],
                "sealed": report.sealed,
                "seconds": round(seconds, 2),
                "events_per_s": round(report.sealed / seconds),
                "ok": report.ok,
                "summary": report.summary()[:120],
                "goal_s": 30,
            }
        )
    )


if __name__ == "__main__":
    main()
