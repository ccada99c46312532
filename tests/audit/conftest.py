"""Fixtures of the audit suite.

The trail is never flushed (its tables refuse TRUNCATE and DELETE, so Django's test flush
leaves them alone): a test looks at the events written since it started (``new_events``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import pytest
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from api import tokens
from api.models import TokenFamily, User
from audit import registry
from audit.db import AUDIT_TABLES
from audit.models import AuditEvent
from tests.audit import demo


@pytest.fixture
def new_events(db: None) -> Callable[[], QuerySet[AuditEvent]]:
    mark = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    return lambda: AuditEvent.objects.filter(id__gt=mark).order_by("id")


@pytest.fixture
def user_resource() -> Iterator[registry.ProtectedResource]:
    """Client accounts declared a protected resource, as a PHI app declares its models."""
    resource = registry.register(User, demo.RESOURCE, patient=demo.patient_of)
    yield resource
    registry.unregister(demo.RESOURCE)


@pytest.fixture
def assign() -> Iterator[Callable[..., None]]:
    """``assign(therapist, *clients)``: the therapist may see those clients in the demo views."""

    def _assign(therapist: User, *clients: User) -> None:
        demo.ASSIGNMENTS.setdefault(therapist.pk, set()).update(c.pk for c in clients)

    yield _assign
    demo.ASSIGNMENTS.clear()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    """Personas get passwords; this suite never checks one, so skip Argon2's deliberate cost."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


class Attacker:
    """Someone who owns the database: turns the audit triggers off and edits rows with SQL.

    Everything it does happens inside the test's transaction, which is rolled back.
    """

    def disarm(self) -> None:
        if connection.vendor == "postgresql":
            # ALTER TABLE needs the foreign-key checks this transaction queued to have run.
            statements = ["SET CONSTRAINTS ALL IMMEDIATE"]
            statements += [f"ALTER TABLE {t} DISABLE TRIGGER USER" for t in AUDIT_TABLES]
        else:
            statements = [
                f"DROP TRIGGER IF EXISTS {t}_{kind}" for t in AUDIT_TABLES for kind in SQLITE_GUARDS
            ]
        for statement in statements:
            self.sql(statement)

    def sql(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with connection.cursor() as cursor:
            cursor.execute(statement, list(params))
            return cursor.fetchall() if cursor.description else []

    def uuid_param(self, value: uuid.UUID) -> str | uuid.UUID:
        return value.hex if connection.vendor == "sqlite" else value


SQLITE_GUARDS = ("no_update", "no_delete", "db_clock")


@pytest.fixture
def attacker(db: None) -> Attacker:
    return Attacker()


def access_token(user: User, *, signed_in_at: datetime, issued_at: datetime | None = None) -> str:
    """An MFA access token of a live session that began at ``signed_in_at``."""
    issued_at = issued_at or timezone.now()
    amr = ["pwd", "otp", "mfa"]
    family = TokenFamily.objects.create(
        user=user,
        created_at=signed_in_at,
        last_refreshed_at=issued_at,
        current_jti=uuid.uuid4(),
        auth_time=signed_in_at,
        amr=amr,
    )
    return tokens.mint(
        typ=tokens.ACCESS,
        sub=str(user.pk),
        role=user.role,
        now=issued_at,
        ttl_seconds=300,
        auth_time=signed_in_at,
        amr=amr,
        family_id=family.pk,
    )
