"""AUD-04: bulk and raw-SQL writes to a tracked table still leave change-history rows."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from django.db import connection
from django.db.models import QuerySet

from api.models import Role, User
from audit.apps import _attach_change_history
from audit.db import change_history_attach
from audit.models import ChangeRecord
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def changes() -> Iterator[Callable[[], QuerySet[ChangeRecord]]]:
    """``api_user`` tracked for this test (DDL inside the test's transaction)."""
    change_history_attach(connection=connection, table="api_user", pk="id")
    mark = ChangeRecord.objects.order_by("-id").values_list("id", flat=True).first() or 0
    yield lambda: ChangeRecord.objects.filter(id__gt=mark, table_name="api_user").order_by("id")


def _pk(record: ChangeRecord) -> uuid.UUID:
    return uuid.UUID(record.row_pk)  # PostgreSQL writes the text form, SQLite its hex storage


def test_aud_04_queryset_update_leaves_field_names_not_values(changes) -> None:
    user = make_user(role=Role.CLIENT)
    before = changes().count()
    User.objects.filter(pk=user.pk).update(full_name="Secret Newname")
    [record] = changes()[before:]
    assert (record.operation, _pk(record), record.fields) == ("update", user.pk, ["full_name"])
    assert "Secret" not in str(record.fields)


def test_aud_04_bulk_create_and_bulk_update_are_recorded(changes) -> None:
    users = User.objects.bulk_create(
        [User(email=f"bulk-{n}@example.test", role=Role.CLIENT) for n in range(3)]
    )
    inserts = list(changes())
    assert [r.operation for r in inserts] == ["insert"] * 3
    assert {"email", "full_name", "role"} <= set(inserts[0].fields)
    for user in users:
        user.full_name = "Renamed"
    User.objects.bulk_update(users, ["full_name"])
    updates = [r for r in changes() if r.operation == "update"]
    assert {_pk(r) for r in updates} == {u.pk for u in users}
    assert all(r.fields == ["full_name"] for r in updates)


def test_aud_04_raw_sql_update_and_delete_are_recorded(changes) -> None:
    user = make_user(role=Role.CLIENT)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE api_user SET is_active = %s WHERE email = %s", [False, user.email])
        cursor.execute("DELETE FROM api_user WHERE email = %s", [user.email])
    operations = [(r.operation, r.fields) for r in changes() if _pk(r) == user.pk]
    assert operations[-2:] == [("update", ["is_active"]), ("delete", [])]


def test_aud_04_change_history_is_append_only(changes) -> None:
    make_user(role=Role.CLIENT)
    with pytest.raises(Exception, match="append-only"):
        changes().update(fields=["nothing"])


def test_aud_04_after_migrate_every_protected_table_is_tracked(user_resource, changes) -> None:
    """``post_migrate`` attaches the triggers to each registered protected model's table."""
    _attach_change_history(using="default")
    user = make_user(role=Role.CLIENT)
    assert any(r.operation == "insert" and _pk(r) == user.pk for r in changes())
