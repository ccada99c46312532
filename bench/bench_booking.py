"""Booking benchmark: ``POST /api/v1/bookings/`` on PostgreSQL beside a bare authenticated
one-query DRF endpoint (``GET /bench/bare``: JWT checked against its token family, then one
count) served the same way in the same run, and the contested slot (100 clients, one slot: one
booking, no 5xx).

The server is uvicorn on loopback (``--workers``, psycopg's connection pool) over its own
database (``BENCH_BOOKING_DATABASE_URL``, default ``postgres://postgres@127.0.0.1:5432/
bench_booking``, dropped and migrated afresh each run). Every booking request books a distinct
free slot (64 therapists, open around the clock; request k takes hour k with therapist k mod 64),
carries an ``Idempotency-Key`` as a real client's would, and must answer 201. Latency is
measured by the client, to the last byte of the answer.

Two ways of loading, because they answer different questions:

- **Saturation** (closed loop): ``--concurrency`` clients (32) each send their next request as
  soon as the previous answer arrives, with no think time. This measures capacity: throughput
  (req/s) of each endpoint and their ratio (goal: booking >= 40% of bare). Its latencies are
  reported too, for both endpoints, but they are mostly queueing: by Little's law a closed loop
  of N clients has mean latency N / throughput, so a p95 under 100 ms at 32 clients would need
  more than 320 req/s, more than the bare endpoint itself serves on a small box. The two
  endpoints are measured in alternating rounds (``--rounds``), so a change in the machine's
  background load during the run falls on both alike.
- **Paced** (open loop): the same 32 client connections send requests at a fixed total
  arrival rate, the same for both endpoints: ``--paced-fraction`` (default 0.1) of the bare
  endpoint's saturation throughput, which is below the capacity of both. Each request is due at
  a fixed time; its latency counts from that time (a request sent late because the client was
  still waiting for its previous answer counts the wait, so a slow server cannot hide its
  backlog). This is the latency a client sees when the server is not overloaded; the p95 goal
  (< 100 ms) is judged here. Each endpoint's utilisation (rate / its saturation throughput) is
  printed beside it, since latency climbs steeply as it nears 1.

Beside each saturation figure, the CPU time each request cost, measured from ``/proc``: the web
server's processes, the PostgreSQL backends serving the benchmark's database, and the load
generator itself. Throughput on a shared box moves with whatever else runs; CPU per request
moves far less, so ``booking_vs_bare_cpu`` (the bare request's CPU over the booking's) is the
steadier reading of the same capacity ratio.

Statements are bound server-side and prepared once per connection
(``DATABASE_PREPARED_STATEMENTS=1``, the setting for a direct connection to PostgreSQL), for
both endpoints alike, unless the environment sets it: ``DATABASE_PREPARED_STATEMENTS=0`` runs
the benchmark with client-side binding, what a transaction pooler needs. The JSON says which.

Booking emails are left to the job worker, as in production (``BOOKING_EMAILS_AFTER_COMMIT=0``);
a last saturation phase repeats the booking with the web process sending them right after
commit, as on a single box (``make run``). The machine's other load is not controlled: compare
ratios, and run more than once.

Prints one JSON line; every latency is labelled with its phase (``saturation`` or ``paced``).

    python bench/bench_booking.py [--seconds 8] [--concurrency 32] [--workers 4] [--rounds 2]
                                  [--paced-fraction 0.1]
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
    # Issued now, not at the hour the slots start from: a token dated then would expire
    # during a run that crosses the next hour.
    issued = datetime.now(UTC)
    tokens = [session_start(user=u, amr=["pwd"], now=issued).access for u in users]
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


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """Child processes of ``pid`` (uvicorn's workers)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return found


class CpuMeter:
    """CPU spent by the web server, the database and this load generator while it runs."""

    def __init__(self, server: subprocess.Popen[bytes], url: str):
        import dj_database_url
        import psycopg

        params = dj_database_url.parse(url)
        self.server = server
        self.database = psycopg.connect(
            host=params["HOST"],
            port=params["PORT"] or 5432,
            user=params["USER"],
            dbname=params["NAME"],
            autocommit=True,
        )

    def _groups(self) -> dict[str, list[int]]:
        backends = self.database.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
        return {
            "web": [self.server.pid, *_children(self.server.pid)],
            "database": [pid for (pid,) in backends],
        }

    def reading(self) -> dict[str, dict[int, float]]:
        readings = {
            name: {pid: _cpu_seconds(pid) for pid in pids} for name, pids in self._groups().items()
        }
        readings["load_generator"] = {os.getpid(): time.process_time()}
        return readings

    @staticmethod
    def spent(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict:
        """CPU seconds per group between two readings (a process started since counts from 0)."""
        return {
            name: sum(cpu - before[name].get(pid, 0.0) for pid, cpu in pids.items())
            for name, pids in after.items()
        }

    def close(self) -> None:
        self.database.close()


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


def _summary(latencies: list[float], statuses: dict[int, int], elapsed: float) -> dict:
    latencies = sorted(latencies)
    return {
        "requests": len(latencies),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


def _run(clients: list[Client], work) -> tuple[list[float], dict[int, int], float]:
    """Run ``work(index, client, record)`` on a thread per client, all started together; the
    latencies and statuses they record, and the elapsed time."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(len(clients) + 1)

    def record(status: int, ms: float) -> None:
        with lock:
            latencies.append(ms)
            statuses[status] = statuses.get(status, 0) + 1

    def run(index: int, client: Client) -> None:
        barrier.wait()
        work(index, client, record)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return latencies, statuses, time.perf_counter() - started


def _saturate(make_request, *, clients: list[Client], seconds: float):
    """Closed loop: each client sends its next request as soon as it has the previous answer."""
    stop = time.perf_counter() + seconds

    def work(index: int, client: Client, record) -> None:
        while time.perf_counter() < stop:
            record(*make_request(client))

    return _run(clients, work)


def _saturation(
    phases: dict, *, clients: list[Client], seconds: float, rounds: int, meter: CpuMeter
) -> dict:
    """Each phase ``seconds`` in all, in ``rounds`` alternating rounds; a summary per phase,
    with the CPU milliseconds a request cost each group of processes."""
    pooled = {name: ([], {}, 0.0) for name in phases}
    cpu = {name: dict.fromkeys(("web", "database", "load_generator"), 0.0) for name in phases}
    for _ in range(rounds):
        for name, make_request in phases.items():
            before = meter.reading()
            latencies, statuses, elapsed = _saturate(
                make_request, clients=clients, seconds=seconds / rounds
            )
            for group, spent in meter.spent(before, meter.reading()).items():
                cpu[name][group] += spent
            all_latencies, all_statuses, total = pooled[name]
            all_latencies.extend(latencies)
            for code, count in statuses.items():
                all_statuses[code] = all_statuses.get(code, 0) + count
            pooled[name] = (all_latencies, all_statuses, total + elapsed)
    summaries = {}
    for name, figures in pooled.items():
        summary = _summary(*figures)
        per_request = {
            group: round(spent * 1000 / summary["requests"], 2)
            for group, spent in cpu[name].items()
        }
        per_request["total"] = round(sum(per_request.values()), 2)
        summaries[name] = {**summary, "cpu_ms_per_request": per_request}
    return summaries


def _paced(make_request, *, clients: list[Client], rate: float, seconds: float) -> dict:
    """Open loop at ``rate`` requests/s in all: request j is due at ``j / rate`` s and sent by
    client ``j mod len(clients)`` at that time, or as soon as that client is free if it is
    still waiting; its latency counts from the due time."""
    count = max(1, int(rate * seconds))
    begin = time.perf_counter() + 0.05

    def work(index: int, client: Client, record) -> None:
        for j in range(index, count, len(clients)):
            due = begin + j / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            status, _ = make_request(client)
            record(status, (time.perf_counter() - due) * 1000)

    latencies, statuses, _ = _run(clients, work)
    figures = _summary(latencies, statuses, seconds)
    del figures["rps"]
    return {"rate_per_s": round(rate, 1), **figures}


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


def _stop(server: subprocess.Popen[bytes]) -> None:
    """Stop the server and its workers (their pooled connections go with them)."""
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--contenders", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--paced-fraction", type=float, default=0.1)
    args = parser.parse_args()
    url = os.environ.get("BENCH_BOOKING_DATABASE_URL", DEFAULT_URL)
    os.environ.setdefault("DATABASE_PREPARED_STATEMENTS", "1")  # the servers inherit it

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
        _saturate(bare, clients=clients, seconds=1.0)  # warm-up: connections, imports
        _saturate(booking, clients=clients, seconds=1.0)
        meter = CpuMeter(server, url)
        saturated = _saturation(
            {"bare": bare, "booking": booking},
            clients=clients,
            seconds=args.seconds,
            rounds=args.rounds,
            meter=meter,
        )
        meter.close()
        rate = args.paced_fraction * saturated["bare"]["rps"]
        paced = {
            name: _paced(make_request, clients=clients, rate=rate, seconds=args.seconds)
            for name, make_request in (("bare", bare), ("booking", booking))
        }
        outcome = _contest(port, tokens[args.concurrency :], therapists[THERAPISTS], first_slot)
    finally:
        _stop(server)

    # The single-box way: the web process sends the booking emails right after commit.
    port = _free_port()
    server = _serve(url, port, args.workers, BOOKING_EMAILS_AFTER_COMMIT="1")
    try:
        clients = [Client(port, token) for token in tokens[: args.concurrency]]
        _saturate(booking, clients=clients, seconds=1.0)
        meter = CpuMeter(server, url)
        inline = _saturation(
            {"booking": booking}, clients=clients, seconds=args.seconds, rounds=1, meter=meter
        )["booking"]
        meter.close()
    finally:
        _stop(server)

    from django.db import connections

    from scheduling.models import Booking

    contested = Booking.objects.filter(therapist_id=therapists[THERAPISTS][0], start=first_slot)
    bookings_for_the_slot = contested.count()
    connections.close_all()
    ratio = saturated["booking"]["rps"] / saturated["bare"]["rps"]
    cpu_ratio = (
        saturated["bare"]["cpu_ms_per_request"]["total"]
        / saturated["booking"]["cpu_ms_per_request"]["total"]
    )
    for name in paced:
        paced[name]["utilisation"] = round(rate / saturated[name]["rps"], 2)
    print(
        json.dumps(
            {
                "bench": "booking",
                "concurrency": args.concurrency,
                "server_workers": args.workers,
                "seconds": args.seconds,
                "prepared_statements": os.environ["DATABASE_PREPARED_STATEMENTS"] == "1",
                "saturation": {
                    "method": "closed loop, no think time; latency mostly queueing",
                    "bare": saturated["bare"],
                    "booking": saturated["booking"],
                    "booking_vs_bare_throughput": round(ratio, 3),
                    "booking_vs_bare_cpu": round(cpu_ratio, 3),
                },
                "paced": {
                    "method": f"open loop at {args.paced_fraction} x bare saturation rps, "
                    "latency from each request's due time",
                    **paced,
                },
                "booking_emails_after_commit_saturation": {
                    **inline,
                    "vs_bare_throughput": round(inline["rps"] / saturated["bare"]["rps"], 3),
                },
                "goal_met": {
                    "throughput_ratio_ge_0_4": ratio >= 0.4,
                    "booking_paced_p95_lt_100ms": paced["booking"]["p95_ms"] < 100,
                    "booking_saturation_p95_lt_100ms": saturated["booking"]["p95_ms"] < 100,
                    "all_bookings_201": {*saturated["booking"]["statuses"]}
                    | {*paced["booking"]["statuses"]}
                    == {"201"},
                },
                "contested": {
                    "clients": len(outcome),
                    "created": outcome.count(201),
                    "conflicts": outcome.count(409),
                    "server_errors": sum(1 for s in outcome if s >= 500),
                    "bookings_for_the_slot": bookings_for_the_slot,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
