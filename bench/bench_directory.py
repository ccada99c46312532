"""Directory benchmark: 10,000 listed therapists on PostgreSQL, "open slot in the next 7 days".

Uses its own database (``BENCH_DIRECTORY_DATABASE_URL``, default
``postgres://postgres@127.0.0.1:5432/bench_directory``; created and migrated if missing), seeds
it once (reused while fresh), and times ``GET /api/v1/therapists/`` through the whole Django
stack in-process: the 7-day availability filter alone, and combined with jurisdiction and
specialty. Prints one JSON line with p50/p95 in milliseconds (goal: p95 < 150 ms).

    python bench/bench_directory.py [--therapists 10000] [--requests 200]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_directory"
ZONES = ["America/New_York", "America/Chicago", "America/Los_Angeles", "Europe/London"]
STATES = ["US-NY", "US-CA", "US-TX", "US-FL", "US-IL", "US-PA", "US-OH", "US-GA", "US-NC", "US-MI"]
SPECIALTIES = ["anxiety", "depression", "trauma", "grief", "couples", "adhd", "ocd", "eating"]
MODALITIES = ["cbt", "dbt", "emdr", "act", "psychodynamic", "ifs"]
LANGUAGES = ["en", "es", "fr", "de", "zh", "pt"]


def _setup(url: str) -> None:
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
    exists = admin.execute(
        "SELECT 1 FROM pg_database WHERE datname = %s", [params["NAME"]]
    ).fetchone()
    if not exists:
        admin.execute(f'CREATE DATABASE "{params["NAME"]}"')
    admin.close()
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "api.settings")
    os.environ.setdefault("DJANGO_DEBUG", "1")
    os.environ["ALLOWED_HOSTS"] = "testserver"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _seed(count: int, now: datetime, rng: random.Random) -> float:
    """Bulk-load ``count`` listed therapists and their availability summaries; seconds taken."""
    from django.db import connection

    from api.models import Role, User
    from scheduling import services, slots
    from scheduling.models import (
        NO_OPEN_SLOT_RANK,
        AvailabilityRule,
        Licence,
        OpenSlotRun,
        SessionType,
        TherapistAttribute,
        TherapistProfile,
    )

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE scheduling_openslotrun, scheduling_availabilityrule, scheduling_licence, "
            "scheduling_sessiontype, scheduling_therapistattribute, scheduling_therapistprofile "
            "CASCADE"
        )
        cursor.execute("DELETE FROM api_user WHERE email LIKE '%%@bench.invalid'")
    admin = User.objects.create_user("admin@bench.invalid", None, role=Role.ADMIN)
    users = User.objects.bulk_create(
        User(email=f"t{i}@bench.invalid", role=Role.THERAPIST, password="!") for i in range(count)
    )
    profiles = TherapistProfile.objects.bulk_create(
        TherapistProfile(
            user=u,
            display_name=f"Therapist {i}",
            bio=rng.choice(["Warm and direct.", "Evidence-based care.", "Calm, practical help."]),
            time_zone=rng.choice(ZONES),
            accepting_new_clients=rng.random() < 0.8,
            slot_step_minutes=30,
            min_notice_minutes=rng.choice([60, 24 * 60]),
            created_at=now,
            updated_at=now,
        )
        for i, u in enumerate(users)
    )
    attributes, session_types, licences, rules = [], [], [], []
    schedules = []
    for p in profiles:
        for kind, values, k in (
            ("specialty", SPECIALTIES, 2),
            ("modality", MODALITIES, 1),
            ("language", LANGUAGES, 2),
        ):
            for pos, value in enumerate(rng.sample(values, k)):
                attributes.append(
                    TherapistAttribute(therapist=p, kind=kind, value=value, position=pos)
                )
        session_types.append(
            SessionType(
                therapist=p,
                name="Session",
                duration_minutes=50,
                currency="USD",
                price_minor=rng.randrange(60, 250) * 100,
                delivery="video",
                created_at=now,
            )
        )
        for state in rng.sample(STATES, rng.choice([1, 1, 2])):
            licences.append(
                Licence(
                    therapist=p,
                    jurisdiction=state,
                    number=f"L{p.pk.hex[:10]}",
                    expires_on=date(2030, 1, 1),
                    verified_by=admin,
                    verified_at=now,
                    created_at=now,
                )
            )
        # A quarter work only one day a fortnight away; the rest have ordinary weekly hours.
        days = [rng.randrange(7)] if rng.random() < 0.25 else [0, 1, 2, 3, 4]
        start = rng.choice([8, 9, 10, 12]) * 60
        week = [slots.WeeklyWindow(d, start, start + 7 * 60) for d in days]
        rules += [
            AvailabilityRule(
                therapist=p, weekday=w.weekday, start_minute=w.start_minute, end_minute=w.end_minute
            )
            for w in week
        ]
        off = [slots.TimeOff(now.date(), now.date() + timedelta(days=9))] if len(days) == 1 else []
        schedules.append((p, week, off))
    TherapistAttribute.objects.bulk_create(attributes, batch_size=5000)
    SessionType.objects.bulk_create(session_types, batch_size=5000)
    Licence.objects.bulk_create(licences, batch_size=5000)
    AvailabilityRule.objects.bulk_create(rules, batch_size=5000)

    # Directory cards, as services.directory_card_refresh builds them.
    plural = {"specialty": "specialties", "modality": "modalities", "language": "languages"}
    cards: dict[object, dict[str, list[object]]] = {
        p.pk: {
            "specialties": [],
            "modalities": [],
            "languages": [],
            "session_types": [],
            "licences": [],
        }
        for p in profiles
    }
    for a in attributes:
        cards[a.therapist_id][plural[a.kind]].append(a.value)
    for st in session_types:
        row = {f: getattr(st, f) for f in services.CARD_SESSION_TYPE_FIELDS}
        cards[st.therapist_id]["session_types"].append({**row, "id": str(st.pk)})
    for lic in licences:
        cards[lic.therapist_id]["licences"].append(
            {"jurisdiction": lic.jurisdiction, "expires_on": lic.expires_on.isoformat()}
        )

    # The summary, as availability_summary_refresh computes it (pure part), loaded in bulk.
    from zoneinfo import ZoneInfo

    runs, updates = [], []
    for p, week, off in schedules:
        schedule = slots.Schedule(
            zone=ZoneInfo(p.time_zone),
            weekly=week,
            time_off=off,
            policy=slots.Policy(
                min_notice=timedelta(minutes=p.min_notice_minutes),
                horizon=timedelta(days=p.horizon_days),
            ),
        )
        starts = services.availability_summary_compute(
            schedule=schedule, durations=[timedelta(minutes=50)], busy=[], now=now
        )
        runs += [
            OpenSlotRun(therapist=p, first_start=a, last_start=b)
            for a, b in services.open_slot_runs(starts, step=timedelta(minutes=30))
        ]
        p.next_open_slot = starts[0] if starts else None
        p.availability_rank = starts[0] if starts else NO_OPEN_SLOT_RANK
        p.availability_computed_at = now
        p.card = cards[p.pk]
        updates.append(p)
    OpenSlotRun.objects.bulk_create(runs, batch_size=5000)
    TherapistProfile.objects.bulk_update(
        updates,
        ["next_open_slot", "availability_rank", "availability_computed_at", "card"],
        batch_size=2000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return time.perf_counter() - started


def _time(client, url: str, params: dict[str, str], runs: int) -> dict[str, float | int]:
    timings, count = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url, params)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.content[:300]
        count = len(response.json()["results"])
    timings.sort()
    return {
        "min_ms": round(timings[0], 1),
        "p50_ms": round(statistics.median(timings), 1),
        "p95_ms": round(timings[int(len(timings) * 0.95) - 1], 1),
        "page_results": count,
    }


def _sql_ms(now: datetime, week: dict[str, str]) -> float:
    """PostgreSQL's own execution time for the filtered first page (EXPLAIN ANALYZE)."""
    from scheduling.filters import TherapistDirectoryFilter
    from scheduling.selectors import directory_queryset

    page = TherapistDirectoryFilter(week, queryset=directory_queryset(now=now)).qs[:51]
    plan = page.explain(analyze=True)
    return float(plan.rsplit("Execution Time:", 1)[1].split("ms")[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--therapists", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    _setup(os.environ.get("BENCH_DIRECTORY_DATABASE_URL", DEFAULT_URL))

    from django.test import Client
    from django.utils import timezone

    from scheduling.models import OpenSlotRun, TherapistProfile

    now = timezone.now()
    fresh = (
        TherapistProfile.objects.filter(availability_computed_at__gte=now - timedelta(hours=6))
        .exclude(card={})
        .count()
    )
    seeded_s = None
    if fresh != args.therapists or TherapistProfile.objects.count() != args.therapists:
        seeded_s = round(_seed(args.therapists, now, random.Random(7)), 1)
    client = Client()
    url = "/api/v1/therapists/"
    week = {
        "available_from": now.isoformat(),
        "available_to": (now + timedelta(days=7)).isoformat(),
    }
    client.get(url, week)  # warm up connections and caches
    figures = {
        "bench": "directory",
        "database": "postgresql",
        "therapists": TherapistProfile.objects.count(),
        "open_slot_runs": OpenSlotRun.objects.count(),
        "requests": args.requests,
        "open_slot_next_7_days": _time(client, url, week, args.requests),
        "with_jurisdiction_and_specialty": _time(
            client, url, {**week, "jurisdiction": "US-NY", "specialty": "anxiety"}, args.requests
        ),
        # About 1% match: the ordered scan examines ~4,000 rows before the page fills.
        "selective_one_percent": _time(
            client,
            url,
            {**week, "jurisdiction": "US-MI", "specialty": "eating", "language": "pt"},
            args.requests,
        ),
        "no_filter": _time(client, url, {}, args.requests),
        "sql_execution_ms": _sql_ms(now, week),
        "load_average_1m": round(os.getloadavg()[0], 1),
        "goal_p95_ms": 150,
        "seeded_seconds": seeded_s,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
