"""Print the SQL that lets the application run as a role that does not own the audit tables."""

from __future__ import annotations

import re
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.db import app_role_statements

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class Command(BaseCommand):
    help = (
        "Print the GRANT/REVOKE statements (PostgreSQL) the tables' owner runs for the "
        "application's database role: no UPDATE, DELETE, TRUNCATE or trigger changes on the "
        "audit tables. See docs/audit.md."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--role", required=True, help="The application's database role.")
        parser.add_argument("--schema", default="public")

    def handle(self, *args: Any, role: str, schema: str, **options: Any) -> None:
        if not (_IDENTIFIER.match(role) and _IDENTIFIER.match(schema)):
            raise CommandError("Role and schema must be plain lower-case SQL identifiers.")
        for statement in app_role_statements(role=role, schema=schema):
            self.stdout.write(statement + ";")
