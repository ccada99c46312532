"""Helpers of the tests that run the app's real processes (uvicorn, Celery worker and beat)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from django.db import connection


def database_url(tmp_path: Path) -> str:
    """The URL of the test database for a child process: PostgreSQL's test database, else a
    SQLite file in ``tmp_path`` (which the caller migrates)."""
    s = connection.settings_dict
    if connection.vendor == "postgresql":
        user = quote(s.get("USER") or "", safe="")
        password = f":{quote(s['PASSWORD'], safe='')}" if s.get("PASSWORD") else ""
        host = quote(s.get("HOST") or "/var/run/postgresql", safe="")
        port = f":{s['PORT']}" if s.get("PORT") else ""
        return f"postgres://{user}{password}@{host}{port}/{s['NAME']}"
    return f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
