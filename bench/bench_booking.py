"""Booking benchmark: ``POST /api/v1/bookings/`` at 32 concurrent clients on PostgreSQL, beside a
bare authenticated one-query DRF endpoint served the same way in the same run, and the contested
slot (100 clients, one slot: one booking, no 5xx). The booking phase runs twice: as deployed in
production (emails left to the job worker, ``BOOKING_EMAILS_AFTER_COMMIT=0``), and as on a single
box (``make run``: the web process sends them right after commit).

The server is uvicorn on loopback (``--workers``, pooled database connections) over its own
database (``BENCH_BOOKING_DATABASE_URL``, default ``postgres://postgres@127.0.0.1:5432/
bench_booking``, dropped and migrated afresh each run). Every booking request books a distinct
free slot (64 therapists, open around the clock; request k takes hour k with therapist k mod 64),
carries an ``Idempotency-Key`` as a real client's would, and must answer 201. Latency is measured
by the client, from send to the last byte. Prints one JSON line: throughput and p50/p95 of both
endpoints, their ratio (goal: booking >= 40% of bare, p95 < 100 ms) and the contested scenario.

    python bench/bench_booking.py [--seconds 8] [--concurrency 32] [--workers 4]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_booking"
THERAPISTS = 64
TOKEN_TTL = 3600
SERVER_ENV = {
    "DJANGO_DEBUG": "1",
    "DJANGO_SETTINGS_MODULE": "booking_bench_settings",
    "ALLOWED_HOSTS": "127.0.0.1",
    "DATABASE_POOL": "1",  # psycopg's pool: connections reused across requests (also ASGI)
    "JWT_ACCESS_TTL_SECONDS": str(TOKEN_TTL),
    "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
    "LOG_LEVEL": "WARNING",
}


def _fresh_database(url: str) -> None:
    import dj_database_url
    import psycopg

    params = dj_database_url.parse(url)
    admin = psycopg.connect(
        host=params["HOST"],
        port=params["PORT"] or 5432,
        user=params["USER"],
        dbname="postgres",
        autocommit=True,
    )
    admin.execute(f'DROP DATABASE IF EXISTS "{params["NAME"]}" WITH (FORCE)')
    admin.execute(f'CREATE DATABASE "{params["NAME"]}"')
    admin.close()


def _setup(url: str) -> None:
    _fresh_database(url)
    os.environ.update(SERVER_ENV, DATABASE_URL=url, DJANGO_SETTINGS_MODULE="api.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _seed(now: datetime, clients: int) -> dict:
    """Therapists open around the clock for a year, and clients with live access tokens."""
    from api.models import Role, User
    from api.services.sessions import session_start
    from scheduling import services
    from scheduling.models import Licence, SessionType, TherapistProfile

    admin = User.objects.create_user("bench-admin@example.test", None, role=Role.ADMIN)
    therapists = []
    for n in range(THERAPISTS + 1):  # the last one is the contested scenario's
        user = User.objects.create_user(f"bench-t{n}@example.test", None, role=Role.THERAPIST)
        profile = services.therapist_profile_create(
            user=user,
            display_name=f"Bench Therapist {n}",
            time_zone="UTC",
            min_notice_minutes=0,
            horizon_days=365,
            slot_step_minutes=60,
            now=now,
        )
        services.availability_rules_replace(
            profile=profile,
            windows=[services.WeeklyWindowInput(d, 0, 1440) for d in range(7)],
            now=now,
        )
        session_type = services.session_type_create(
            profile=profile,
            name="Session",
            duration_minutes=50,
            price_minor=12000,
            currency="USD",
            delivery="video",
            now=now,
        )
        Licence.objects.create(
            therapist=profile,
            jurisdiction="US-NY",
            number=f"B{n}",
            expires_on=date(2099, 1, 1),
            verified_by=admin,
            verified_at=now,
            created_at=now,
        )
        therapists.append((str(profile.pk), str(session_type.pk)))
    users = User.objects.bulk_create(
        User(email=f"bench-c{n}@example.test", role=Role.CLIENT, password="!")
        for n in range(clients)
    )
    tokens = [session_start(user=u, amr=["pwd"], now=now).access for u in users]
    assert TherapistProfile.objects.count() == THERAPISTS + 1
    assert SessionType.objects.count() == THERAPISTS + 1
    return {"therapists": therapists, "tokens": tokens}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(url: str, port: int, workers: int, **extra_env: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **SERVER_ENV,
        **extra_env,
        "DATABASE_URL": url,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "bench"), str(ROOT)]),
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "api.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the benchmark server did not start")


class Client:
    """One keep-alive HTTP/1.1 connection to the server."""

    def __init__(self, port: int, token: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def request(self, method: str, path: str, body: dict | None = None, **headers: str):
        started = time.perf_counter()
        payload = json.dumps(body).encode() if body is not None else None
        self.conn.request(method, path, body=payload, headers={**self.headers, **headers})
        response = self.conn.getresponse()
        response.read()
        return response.status, (time.perf_counter() - started) * 1000


def _load(make_request, *, clients: list[Client], seconds: float) -> dict:
    """Each client thread sends requests back to back for ``seconds``."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    barrier = threading.Barrier(len(clients) + 1)

    def run(client: Client) -> None:
        mine, codes = [], {}
        barrier.wait()
        while time.perf_counter() < stop:
            status, ms = make_request(client)
            mine.append(ms)
            codes[status] = codes.get(status, 0) + 1
        with lock:
            latencies.extend(mine)
            for code, count in codes.items():
                statuses[code] = statuses.get(code, 0) + count

    threads = [threading.Thread(target=run, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


def _contest(port: int, tokens: list[str], target: tuple[str, str], start: datetime) -> list[int]:
    """Every contender at once for one therapist's one start; their status codes."""
    contenders = [Client(port, t) for t in tokens]
    for c in contenders:  # connect first, so the race is the requests'
        c.conn.connect()
    body = {
        "therapist": target[0],
        "session_type": target[1],
        "start": start.isoformat(),
        "jurisdiction": "US-NY",
    }
    barrier = threading.Barrier(len(contenders))
    outcome: list[int] = []

    def contend(client: Client) -> None:
        barrier.wait()
        outcome.append(client.request("POST", "/api/v1/bookings/", body)[0])

    threads = [threading.Thread(target=contend, args=(c,)) for c in contenders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--contenders", type=int, default=100)
    args = parser.parse_args()
    url = os.environ.get("BENCH_BOOKING_DATABASE_URL", DEFAULT_URL)

    _setup(url)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    seeded = _seed(now, clients=args.concurrency + args.contenders)
    tokens, therapists = seeded["tokens"], seeded["therapists"]
    first_slot = now + timedelta(hours=2)
    counter = iter(range(10**9))
    counter_lock = threading.Lock()

    def bare(client: Client):
        return client.request("GET", "/bench/bare")

    def booking(client: Client):
        with counter_lock:
            k = next(counter)
        therapist, session_type = therapists[k % THERAPISTS]
        body = {
            "therapist": therapist,
            "session_type": session_type,
            "start": (first_slot + timedelta(hours=k)).isoformat(),
            "jurisdiction": "US-NY",
        }
        return client.request(
            "POST", "/api/v1/bookings/", body, **{"Idempotency-Key": uuid.uuid4().hex}
        )

    port = _free_port()
    server = _serve(url, port, args.workers, BOOKING_EMAILS_AFTER_COMMIT="0")
    try:
        clients = [Client(port, token) for token in tokens[: args.concurrency]]
        _load(bare, clients=clients, seconds=1.0)  # warm-up: connections, imports
        _load(booking, clients=clients, seconds=1.0)
        bare_figures = _load(bare, clients=clients, seconds=args.seconds)
        booking_figures = _load(booking, clients=clients, seconds=args.seconds)
        outcome = _contest(port, tokens[args.concurrency :], therapists[THERAPISTS], first_slot)
    finally:
        server.terminate()
        server.wait(timeout=30)

    # The single-box way: the web process sends the booking emails right after commit.
    port = _free_port()
    server = _serve(url, port, args.workers, BOOKING_EMAILS_AFTER_COMMIT="1")
    try:
        clients = [Client(port, token) for token in tokens[: args.concurrency]]
        _load(booking, clients=clients, seconds=1.0)
        inline_figures = _load(booking, clients=clients, seconds=args.seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)

    from scheduling.models import Booking

    contested = Booking.objects.filter(therapist_id=therapists[THERAPISTS][0], start=first_slot)
    ratio = booking_figures["rps"] / bare_figures["rps"]
    print(
        json.dumps(
            {
                "bench": "booking",
                "concurrency": args.concurrency,
                "server_workers": args.workers,
                "seconds": args.seconds,
                "bare": bare_figures,
                "booking": booking_figures,
                "booking_vs_bare_throughput": round(ratio, 3),
                "booking_emails_after_commit": inline_figures,
                "booking_emails_after_commit_vs_bare_throughput": round(
                    inline_figures["rps"] / bare_figures["rps"], 3
                ),
                "goal_met": {
                    "throughput_ratio_ge_0_4": ratio >= 0.4,
                    "booking_p95_lt_100ms": booking_figures["p95_ms"] < 100,
                    "all_bookings_201": set(booking_figures["statuses"]) == {"201"},
                },
                "contested": {
                    "clients": len(outcome),
                    "created": outcome.count(201),
                    "conflicts": outcome.count(409),
                    "server_errors": sum(1 for s in outcome if s >= 500),
                    "bookings_for_the_slot": contested.count(),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
