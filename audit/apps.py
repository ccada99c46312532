from typing import Any

from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate


def _attach_change_history(using: str = "default", **kwargs: Any) -> None:
    """After every migrate: change-history triggers on every protected table (idempotent).

    Run each time because a migration may rebuild a table (SQLite does for most changes), which
    drops its triggers, and because the SQLite triggers list the table's current columns.
    """
    from audit.db import change_history_attach
    from audit.registry import resources

    connection = connections[using]
    existing = set(connection.introspection.table_names())
    for resource in resources():
        table = resource.model._meta.db_table
        if resource.track_changes and table in existing:
            pk = resource.model._meta.pk.column
            change_history_attach(connection=connection, table=table, pk=pk)


class AuditConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "audit"

    def ready(self) -> None:
        from api import auditing
        from audit.services import audit_record

        post_migrate.connect(_attach_change_history, sender=self)
        # Identity (in api, below this app) records its security events through this port.
        auditing.audit_recorder_register(audit_record)
