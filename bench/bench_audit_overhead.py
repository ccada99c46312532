"""Cost of auditing a protected read: the same endpoint with and without ``AuditedMixin``, in the
same run (goal: median added latency under 1 ms).

Uses its own PostgreSQL database (``bench_audit_overhead``, recreated each run) and drives
Django in-process through the whole middleware stack: a therapist (JWT with MFA) reads a
client's record, alternating the plain and the audited view so both see the same conditions.
The audited request also commits its audit row (durably) before answering; sealing happens
later, off the request path, as in production. Persistent database connections, as a server
keeps them. Prints one JSON line (milliseconds).

Most of the added time is the durable commit of that row: the server waits for its WAL flush,
whose cost is the disk's (and whatever else writes to it). So the same loop also times the bare
statement the audit issues (``audit.db.insert_events``, one row, autocommit): ``insert_median_ms``
is that floor on this machine at this moment, and ``added_minus_insert_median_ms`` what the audit
machinery costs on top of it (finding the objects served, the actor, building the row).

    DJANGO_DEBUG=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/telehealth \\
        python bench/bench_audit_overhead.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_audit_db import open_database

urlpatterns: list[Any] = []  # filled by _routes() once Django is set up


def _routes() -> None:
    from django.urls import path
    from rest_framework import serializers
    from rest_framework.request import Request
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from api.models import User
    from audit.mixins import AuditedMixin
    from audit.registry import register

    register(User, "bench.client", patient=lambda user: user.pk)

    class ClientOut(serializers.ModelSerializer):  # type: ignore[type-arg]
        class Meta:
            model = User
            fields = ["id", "full_name", "email", "role"]

    class PlainView(APIView):
        def get(self, request: Request, pk: uuid.UUID) -> Response:
            return Response(ClientOut(User.objects.get(pk=pk)).data)

    class AuditedView(AuditedMixin, PlainView):
        audit_resource = "bench.client"

    urlpatterns.extend(
        [
            path("plain/<uuid:pk>", PlainView.as_view()),
            path("audited/<uuid:pk>", AuditedView.as_view()),
        ]
    )


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _bare_row(patient_id: uuid.UUID) -> list[Any]:
    """One audit row as ``insert_events`` takes it (a system event about the bench client)."""
    from django.db import connection, models

    from audit.db import EVENT_COLUMNS

    values = {name: "" for name in EVENT_COLUMNS}
    values.update(
        actor_id=None,
        actor_label="system",
        session_id=None,
        action="read",
        resource_type="bench.floor",
        resource_id=str(patient_id),
        patient_id=models.UUIDField().get_db_prep_save(patient_id, connection),
        outcome="allowed",
        details=json.dumps({"route": "bench"}),
    )
    return [values[name] for name in EVENT_COLUMNS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    os.environ.setdefault("DATABASE_CONN_MAX_AGE", "60")  # persistent, as a server runs it
    open_database("bench_audit_overhead", fresh=True)
    _routes()

    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from api.models import Role, User
    from api.services.sessions import session_start
    from audit.db import insert_events
    from audit.models import AuditEvent

    settings.ROOT_URLCONF = __name__
    therapist = User.objects.create_user("bench-therapist@example.test", None, role=Role.THERAPIST)
    patient = User.objects.create_user(
        "bench-client@example.test", None, role=Role.CLIENT, full_name="Bench Client"
    )
    token = session_start(user=therapist, amr=["pwd", "otp", "mfa"], now=timezone.now()).access
    browser = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    urls = {"plain": f"/plain/{patient.pk}", "audited": f"/audited/{patient.pk}"}
    times: dict[str, list[float]] = {"plain": [], "audited": [], "insert": []}
    row = _bare_row(patient.pk)
    for n in range(args.warmup + args.requests):
        order = ("plain", "audited") if n % 2 else ("audited", "plain")
        for name in order:
            start = time.perf_counter()
            response = browser.get(urls[name])
            elapsed = (time.perf_counter() - start) * 1000
            assert response.status_code == 200, response.content
            if n >= args.warmup:
                times[name].append(elapsed)
        start = time.perf_counter()
        insert_events(connection, [row])
        if n >= args.warmup:
            times["insert"].append((time.perf_counter() - start) * 1000)
    added = [a - p for a, p in zip(times["audited"], times["plain"], strict=True)]
    beyond_insert = [a - i for a, i in zip(added, times["insert"], strict=True)]
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        synchronous_commit = cursor.fetchone()[0]
    print(
        json.dumps(
            {
                "bench": "audit_overhead",
                "database": connection.vendor,
                "synchronous_commit": synchronous_commit,
                "requests_each": args.requests,
                "audit_rows": AuditEvent.objects.exclude(resource_type="bench.floor").count(),
                "plain_median_ms": round(statistics.median(times["plain"]), 3),
                "audited_median_ms": round(statistics.median(times["audited"]), 3),
                "added_median_ms": round(statistics.median(added), 3),
                "added_p95_ms": round(_percentile(added, 0.95), 3),
                "insert_median_ms": round(statistics.median(times["insert"]), 3),
                "added_minus_insert_median_ms": round(statistics.median(beyond_insert), 3),
                "goal_added_median_ms": 1.0,
            }
        )
    )


if __name__ == "__main__":
    main()
