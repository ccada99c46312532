"""Backup and restore (docs/operations.md): pg_dump, restore into a new database, audit_verify
against the saved signed head, then ANALYZE (a restored database has no statistics)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from django.core.management import call_command
from django.db import connection

from audit.services import audit_record

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


def _pg_args(name: str) -> list[str]:
    settings = connection.settings_dict
    args = ["--dbname", name]
    for flag, key in (("--host", "HOST"), ("--port", "PORT"), ("--username", "USER")):
        if settings.get(key):
            args += [flag, str(settings[key])]
    return args


def _url(name: str) -> str:
    s = connection.settings_dict
    user = quote(s.get("USER") or "", safe="")
    password = f":{quote(s['PASSWORD'], safe='')}" if s.get("PASSWORD") else ""
    host = quote(s.get("HOST") or "/var/run/postgresql", safe="")
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"postgres://{user}{password}@{host}{port}/{name}"


def _psql(sql: str, database: str) -> str:
    result = subprocess.run(
        ["psql", *_pg_args(database), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PGPASSWORD": connection.settings_dict.get("PASSWORD") or ""},
    )
    return result.stdout.strip()


@pytest.fixture
def restored_name() -> Iterator[str]:
    name = f"{connection.settings_dict['NAME']}_restored_{uuid.uuid4().hex[:8]}"
    yield name
    _psql(f'DROP DATABASE IF EXISTS "{name}"', "postgres")


def test_a_dump_restored_into_a_new_database_verifies_against_the_saved_head(
    tmp_path: Path, restored_name: str
) -> None:
    for n in range(5):
        audit_record(action="test.backup", details={"n": n})
    call_command("audit_seal", stdout=io.StringIO())
    head = tmp_path / "head.json"
    call_command("audit_checkpoint", "--out", str(head), stdout=io.StringIO())
    env = {**os.environ, "PGPASSWORD": connection.settings_dict.get("PASSWORD") or ""}

    dump = tmp_path / "telehealth.dump"
    source = connection.settings_dict["NAME"]
    subprocess.run(
        ["pg_dump", "--format=custom", "--file", str(dump), *_pg_args(source)],
        check=True,
        timeout=120,
        env=env,
    )
    _psql(f'CREATE DATABASE "{restored_name}"', "postgres")
    # Data goes in before the triggers are created (post-data), so the restore neither fires
    # the trail's INSERT triggers nor trips its append-only guards.
    subprocess.run(
        ["pg_restore", "--no-owner", "--exit-on-error", *_pg_args(restored_name), str(dump)],
        check=True,
        timeout=120,
        env=env,
    )

    # A restored database has no planner statistics until ANALYZE (the sealer's scan relies on
    # them); docs/operations.md runs it right after the restore.
    stats = "SELECT count(*) FROM pg_stats WHERE tablename = 'audit_event'"
    assert _psql(stats, restored_name) == "0"
    _psql("ANALYZE", restored_name)
    assert int(_psql(stats, restored_name)) > 0

    verified = subprocess.run(
        [sys.executable, "manage.py", "audit_verify", "--head", str(head)],
        cwd=ROOT,
        env={**env, "DJANGO_DEBUG": "1", "DATABASE_URL": _url(restored_name)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr[-2000:]
    assert verified.stdout.startswith("OK: ")
    assert json.loads(head.read_text())["seq"] >= 5
