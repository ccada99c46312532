"""The database's last word on double bookings (PostgreSQL only).

``booking_no_overlap`` is an exclusion constraint: no two bookings of one therapist in a
blocking status may have overlapping blocked ranges (``[blocked_start, blocked_end)``, buffers
included). A constraint cannot read the clock, so a hold counts until its status changes: the
booking services cancel a therapist's expired holds (``hold_expired``) in the same transaction,
under the same lock, before they check and insert (see ``docs/concurrency.md``).

SQLite has no such constraint; there the transactional check under the write lock (SQLite
serialises writers) is what holds. The constraint lives in a migration only (Django's
``ExclusionConstraint`` would be emitted on SQLite too), so the model state does not list it.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError

CONSTRAINT = "booking_no_overlap"
# Every status that blocks time (scheduling.selectors: confirmed, completed, no-show, and a hold
# until it is cancelled). Only "cancelled" frees the range.
BLOCKING = ("held", "confirmed", "completed", "no_show")

_CREATE = (
    "CREATE EXTENSION IF NOT EXISTS btree_gist",
    f"""
ALTER TABLE scheduling_booking ADD CONSTRAINT {CONSTRAINT} EXCLUDE USING gist (
    therapist_id WITH =,
    tstzrange(blocked_start, blocked_end, '[)') WITH &&
) WHERE (status IN ({", ".join(f"'{s}'" for s in BLOCKING)}))
""",
)
_DROP = f"ALTER TABLE scheduling_booking DROP CONSTRAINT IF EXISTS {CONSTRAINT};"

EXCLUSION_VIOLATION = "23P01"


def add_no_overlap_constraint(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for statement in _CREATE:  # one at a time: bound server-side, a statement is one command
            schema_editor.execute(statement)


def drop_no_overlap_constraint(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_DROP)


def is_overlap_violation(exc: IntegrityError) -> bool:
    """Whether an insert or update was refused by ``booking_no_overlap``."""
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) == EXCLUSION_VIOLATION or CONSTRAINT in str(exc)
