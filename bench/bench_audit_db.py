"""Audit benchmark database: a million sealed events on PostgreSQL (shared by the verify and
export benchmarks), and the bulk sealing rate measured while making it.

Uses its own database (``BENCH_AUDIT_DATABASE_URL``, default the server of ``DATABASE_URL`` with
database ``bench_audit``), created and migrated if missing (recreated if its migrations no
longer match), loaded once and reused while it holds enough events. Prints one JSON line.

    DJANGO_DEBUG=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/telehealth \\
        python bench/bench_audit_db.py [--events 1000000]

Other audit benchmarks import ``open_database`` and ``prepare``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LOAD_BATCH = 100_000


def _bench_url(name: str) -> str:
    import dj_database_url

    explicit = os.environ.get("BENCH_AUDIT_DATABASE_URL")
    if explicit and name == "bench_audit":
        return explicit
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/telehealth")
    params = dj_database_url.parse(base)
    if params["ENGINE"] != "django.db.backends.postgresql":
        raise SystemExit("The audit benchmarks need PostgreSQL: set DATABASE_URL=postgres://...")
    user = params["USER"] or "postgres"
    return f"postgres://{user}@{params['HOST'] or '127.0.0.1'}:{params['PORT'] or 5432}/{name}"


def _admin(url: str) -> Any:
    import dj_database_url
    import psycopg

    params = dj_database_url.parse(url)
    return psycopg.connect(
        host=params["HOST"],
        port=params["PORT"] or 5432,
        user=params["USER"],
        dbname="postgres",
        autocommit=True,
    )


def _create(url: str, *, fresh: bool) -> None:
    import dj_database_url

    name = dj_database_url.parse(url)["NAME"]
    with _admin(url) as admin:
        if fresh:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            admin.execute(f'CREATE DATABASE "{name}"')


def open_database(name: str = "bench_audit", *, fresh: bool = False) -> str:
    """Point Django at benchmark database ``name`` (created, migrated); return its URL."""
    url = _bench_url(name)
    _create(url, fresh=fresh)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "api.settings")
    os.environ.setdefault("DJANGO_DEBUG", "1")
    os.environ["ALLOWED_HOSTS"] = "testserver,localhost"
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections
    from django.db.migrations.exceptions import InconsistentMigrationHistory

    settings.DEBUG = False  # no query log kept in memory
    try:
        call_command("migrate", verbosity=0, skip_checks=True)
    except InconsistentMigrationHistory:  # another app rewrote its migrations: start over
        connections.close_all()
        _create(url, fresh=True)
        call_command("migrate", verbosity=0, skip_checks=True)
    return url


_LOAD_SQL = """
INSERT INTO audit_event (action, actor_id, actor_role, actor_label, session_id, resource_type,
                         resource_id, patient_id, outcome, source_ip, user_agent, request_id,
                         details)
SELECT (ARRAY['read', 'list', 'update', 'create'])[1 + g %% 4],
       md5('actor' || (g %% 300))::uuid, 'therapist', '', md5('session' || (g %% 9000))::uuid,
       'scheduling.booking', md5('booking' || g)::uuid::text, md5('client' || (g %% 5000))::uuid,
       CASE WHEN g %% 50 = 0 THEN 'denied' ELSE 'allowed' END,
       '10.' || (g %% 250) || '.' || (g %% 200) || '.7',
       'Mozilla/5.0 (X11; Linux x86_64) TelehealthBench/1.0', md5(g::text),
       jsonb_build_object('route', 'api/v1/bookings/<uuid:pk>', 'method', 'GET',
                          'fields', jsonb_build_array('start', 'end'))
FROM generate_series(%s, %s) AS g
"""


def prepare(events: int) -> dict[str, Any]:
    """At least ``events`` sealed events in the open database; what it took to get there."""
    from django.db import connection, transaction

    from audit.chain import audit_seal
    from audit.models import AuditEvent

    present = AuditEvent.objects.count()
    load_s = 0.0
    if present < events:
        start = time.perf_counter()
        for low in range(present + 1, events + 1, LOAD_BATCH):
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(_LOAD_SQL, [low, min(low + LOAD_BATCH - 1, events)])
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE audit_event")
        load_s = time.perf_counter() - start
    start = time.perf_counter()
    sealed = audit_seal().sealed
    seal_s = time.perf_counter() - start
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE audit_seal")
    return {
        "events": AuditEvent.objects.count(),
        "loaded": events - present if present < events else 0,
        "load_s": round(load_s, 1),
        "sealed": sealed,
        "seal_s": round(seal_s, 1),
        "seal_events_per_s": round(sealed / seal_s) if sealed else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    open_database()
    print(json.dumps({"bench": "audit_db", **prepare(args.events)}))


if __name__ == "__main__":
    main()
