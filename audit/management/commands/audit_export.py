"""Export the sealed audit trail from the shell, like GET /api/v1/audit/export/<format>.

CSV and JSON lines end with their signed manifest line; FHIR NDJSON holds AuditEvent lines
only, and its signed manifest (a Provenance resource) goes to ``--manifest``.
"""

from __future__ import annotations

import json
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils.dateparse import parse_datetime

from audit.export import (
    MEDIA_TYPES,
    ExportTally,
    export_body,
    export_chunks,
    export_plan,
    export_provenance,
)
from audit.selectors import EventFilters
from audit.services import SYSTEM, audit_record


def _moment(value: str) -> datetime:
    parsed = parse_datetime(value)
    if parsed is None or parsed.tzinfo is None:
        raise CommandError(f"{value!r}: give an ISO 8601 time with a UTC offset.")
    return parsed


class Command(BaseCommand):
    help = (
        "Stream the sealed audit trail as CSV or JSON lines (signed manifest as the last line), "
        "or as FHIR AuditEvent NDJSON with its signed manifest (a Provenance) in --manifest."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=sorted(MEDIA_TYPES), default="jsonl")
        parser.add_argument("--out", type=Path, help="File to write (default: standard output).")
        parser.add_argument(
            "--manifest",
            type=Path,
            help="FHIR only, and required there: the file for the signed Provenance manifest.",
        )
        parser.add_argument("--since", type=_moment)
        parser.add_argument("--until", type=_moment)
        parser.add_argument("--actor", type=uuid.UUID)
        parser.add_argument("--client", type=uuid.UUID)
        parser.add_argument("--action")
        parser.add_argument("--resource", help='"type" or "type:id"')
        parser.add_argument("--outcome", choices=["allowed", "denied", "error"])

    def handle(self, *args: Any, **options: Any) -> None:
        fhir = options["format"] == "fhir"
        if fhir and options["manifest"] is None:
            raise CommandError("--format fhir needs --manifest PATH for its signed manifest.")
        if not fhir and options["manifest"] is not None:
            raise CommandError("--manifest is for --format fhir; CSV and JSON lines end with it.")
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
        tally = ExportTally()
        try:
            for chunk in export_body(plan, tally) if fhir else export_chunks(plan):
                stream.write(chunk)
        finally:
            if target is not None:
                stream.close()
            else:
                stream.flush()
        if fhir:
            provenance = export_provenance(plan, tally)
            text = json.dumps(provenance, ensure_ascii=False, sort_keys=True) + "\n"
            options["manifest"].write_text(text, encoding="utf-8")
