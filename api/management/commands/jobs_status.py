"""``manage.py jobs_status``: each periodic job's last run, last success, last failure and
failure count (the ``JobRun`` rows the Celery tasks write; api/jobs.py), so a job that keeps
failing, or never runs, is visible. ``--json`` for scripts."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from api.models import JobRun


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def _cell(value: object) -> str:
    return "never" if value is None else str(value)


class Command(BaseCommand):
    help = "Show each periodic job's last run, success, failure and failure count."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json", dest="as_json", action="store_true", help="One JSON object per job."
        )

    def handle(self, *args: Any, as_json: bool, **options: Any) -> None:
        runs = {row.name: row for row in JobRun.objects.all()}
        names = sorted(set(settings.CELERY_BEAT_SCHEDULE) | set(runs))
        rows: list[dict[str, object]] = []
        for name in names:
            row = runs.get(name) or JobRun(name=name)
            rows.append(
                {
                    "job": name,
                    "runs": row.runs,
                    "last_run": _when(row.last_started_at),
                    "last_success": _when(row.last_success_at),
                    "last_failure": _when(row.last_failure_at),
                    "failures": row.failures,
                    "last_error": row.last_error or None,
                }
            )
        if as_json:
            for row_out in rows:
                self.stdout.write(json.dumps(row_out))
            return
        header = ("job", "runs", "last_run", "last_success", "last_failure", "failures")
        table: list[tuple[str, ...]] = [header]
        table += [tuple(_cell(r[k]) for k in header) for r in rows]
        widths = [max(len(line[i]) for line in table) for i in range(len(header))]
        for line in table:
            cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
            self.stdout.write("  ".join(cells).rstrip())
