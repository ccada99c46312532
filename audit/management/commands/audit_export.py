"""Export the sealed audit trail from the shell, like GET /api/v1/audit/export."""

from __future__ import annotations

import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils.dateparse import parse_datetime

from audit.export import MEDIA_TYPES, export_chunks, export_plan
from audit.selectors import EventFilters
from audit.services import SYSTEM, audit_record


def _moment(value: str) -> datetime:
    parsed = parse_datetime(value)
    if parsed is None or parsed.tzinfo is None:
        raise CommandError(f"{value!r}: give an ISO 8601 time with a UTC offset.")
    return parsed


class Command(BaseCommand):
    help = "Stream the sealed audit trail as CSV, JSON lines or FHIR NDJSON with a signed manifest."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=sorted(MEDIA_TYPES), default="jsonl")
        parser.add_argument("--out", type=Path, help="File to write (default: standard output).")
        parser.add_argument("--since", type=_moment)
        parser.add_argument("--until", type=_moment)
        parser.add_argument("--actor", type=uuid.UUID)
        parser.add_argument("--client", type=uuid.UUID)
        parser.add_argument("--action")
        parser.add_argument("--resource", help='"type" or "type:id"')
        parser.add_argument("--outcome", choices=["allowed", "denied", "error"])

    def handle(self, *args: Any, **options: Any) -> None:
        resource_type, _, resource_id = (options["resource"] or "").partition(":")
        filters = EventFilters(
            since=options["since"],
            until=options["until"],
            actor_id=options["actor"],
            patient_id=options["client"],
            action=options["action"],
            resource_type=resource_type or None,
            resource_id=resource_id or None,
            outcome=options["outcome"],
        )
        with transaction.atomic():
            plan = export_plan(fmt=options["format"], filters=filters)
            audit_record(
                action="audit.export",
                actor_label=SYSTEM,
                resource_type="audit.event",
                patient_id=filters.patient_id,
                details={
                    "via": "manage.py",
                    "format": plan.fmt,
                    "filters": filters.as_details(),
                    "upto_seq": plan.head.seq,
                },
            )
        target = options["out"]
        stream = target.open("wb") if target is not None else sys.stdout.buffer
        try:
            for chunk in export_chunks(plan):
                stream.write(chunk)
        finally:
            if target is not None:
                stream.close()
            else:
                stream.flush()
