"""A real database failure of the audit insert (AUD-07), for tests that need one.

Not a stub of the audit service: a trigger makes the database itself refuse every INSERT into
``audit_event``, as a full disk, a lost privilege or a broken constraint would. DDL is
transactional on both backends; use it in ``django_db(transaction=True)`` tests so that what
the request committed or rolled back is what the database really holds afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection

_NAME = "test_audit_insert_fails"
_MESSAGE = "audit insert failed (injected by the test)"


def _statements() -> tuple[list[str], list[str]]:
    if connection.vendor == "postgresql":
        return (
            [
                f"CREATE FUNCTION {_NAME}() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$ BEGIN RAISE EXCEPTION '{_MESSAGE}'; END $$",
                f"CREATE TRIGGER {_NAME} BEFORE INSERT ON audit_event "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {_NAME}()",
            ],
            [f"DROP TRIGGER {_NAME} ON audit_event", f"DROP FUNCTION {_NAME}()"],
        )
    return (
        [
            f"CREATE TRIGGER {_NAME} BEFORE INSERT ON audit_event "
            f"BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END"
        ],
        [f"DROP TRIGGER {_NAME}"],
    )


@contextmanager
def audit_inserts_fail() -> Iterator[None]:
    """Inside the block, every INSERT into ``audit_event`` raises a database error."""
    create, drop = _statements()
    with connection.cursor() as cursor:
        for statement in create:
            cursor.execute(statement)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            for statement in drop:
                cursor.execute(statement)
