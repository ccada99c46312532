"""Export of a million audit events, streamed through the ASGI application (goal: peak memory
under 200 MB).

Uses the database of ``bench_audit_db.py``; a compliance officer signed in with MFA asks
``GET /api/v1/audit/export/<format>`` of ``api.asgi.application`` in-process, and a server
stand-in counts the body chunks as they are sent, so nothing is held but what the application
holds. Reports the process's peak resident memory (before and after), bytes, rows and time.
Prints one JSON line.

    DJANGO_DEBUG=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/telehealth \\
        python bench/bench_audit_export.py [--events 1000000] [--format jsonl]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_audit_db import open_database, prepare


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _officer_token() -> str:
    from django.utils import timezone

    from api.models import Role, User
    from api.services.sessions import session_start

    officer, _ = User.objects.get_or_create(
        email="bench-compliance@example.test",
        defaults={"role": Role.COMPLIANCE_OFFICER, "full_name": "Bench Officer"},
    )
    return session_start(user=officer, amr=["pwd", "otp", "mfa"], now=timezone.now()).access


async def _stream(app: Any, token: str, fmt: str) -> dict[str, Any]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": f"/api/v1/audit/export/{fmt}",
        "raw_path": f"/api/v1/audit/export/{fmt}".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    seen: dict[str, Any] = {"status": None, "bytes": 0, "chunks": 0, "lines": 0}

    sent_request = False
    finished = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await finished.wait()  # the client stays connected until the response ends
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            seen["status"] = message["status"]
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            seen["bytes"] += len(body)
            seen["lines"] += body.count(b"\n")
            seen["chunks"] += 1
            if not message.get("more_body", False):
                finished.set()

    await app(scope, receive, send)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--format", choices=["csv", "jsonl", "fhir"], default="jsonl")
    args = parser.parse_args()
    open_database()
    prepared = prepare(args.events)
    token = _officer_token()

    from django.db import connections

    from api.asgi import application

    connections.close_all()  # the export runs in the ASGI handler's own thread
    before = _peak_mb()
    start = time.perf_counter()
    seen = asyncio.run(_stream(application, token, args.format))
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "bench": "audit_export",
                "format": args.format,
                "events": prepared["events"],
                "status": seen["status"],
                "rows": seen["lines"] - (1 if args.format != "csv" else 2),
                "mb_streamed": round(seen["bytes"] / 2**20, 1),
                "chunks": seen["chunks"],
                "seconds": round(seconds, 1),
                "peak_rss_mb_before": round(before, 1),
                "peak_rss_mb": round(_peak_mb(), 1),
                "goal_peak_mb": 200,
            }
        )
    )


if __name__ == "__main__":
    main()
