# The audit tables are unmanaged (``managed = False``): Django's flush (test runner, ``manage.py
# flush``) would TRUNCATE them, which their triggers refuse. They are created here explicitly:
# the migration state says unmanaged, the database operations create the same models managed.

import django.db.models.deletion
import django.db.models.functions.datetime
from django.db import migrations, models

import audit.db


def _models(*, managed):
    options = {"managed": managed}
    return [
        migrations.CreateModel(
            name="AuditEvent",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("occurred_at", models.DateTimeField(db_default=django.db.models.functions.datetime.Now())),
                ("txid", models.BigIntegerField(blank=True, editable=False, null=True)),
                ("actor_id", models.UUIDField(blank=True, null=True)),
                ("actor_role", models.CharField(blank=True, max_length=32)),
                ("actor_label", models.CharField(blank=True, max_length=32)),
                ("session_id", models.UUIDField(blank=True, null=True)),
                ("action", models.CharField(max_length=64)),
                ("resource_type", models.CharField(blank=True, max_length=64)),
                ("resource_id", models.CharField(blank=True, max_length=64)),
                ("patient_id", models.UUIDField(blank=True, null=True)),
                ("outcome", models.CharField(choices=[("allowed", "Allowed"), ("denied", "Denied"), ("error", "Error")], default="allowed", max_length=16)),
                ("source_ip", models.CharField(blank=True, max_length=45)),
                ("user_agent", models.CharField(blank=True, max_length=256)),
                ("request_id", models.CharField(blank=True, max_length=64)),
                ("details", models.JSONField(blank=True, default=dict)),
            ],
            options={
                **options,
                "db_table": "audit_event",
                "indexes": [
                    models.Index(fields=["patient_id", "id"], name="audit_event_patient"),
                    models.Index(fields=["actor_id", "id"], name="audit_event_actor"),
                    models.Index(fields=["resource_type", "resource_id"], name="audit_event_resource"),
                    models.Index(fields=["occurred_at"], name="audit_event_occurred"),
                    models.Index(fields=["txid"], name="audit_event_txid"),
                ],
            },
        ),
        migrations.CreateModel(
            name="AuditSeal",
            fields=[
                ("seq", models.BigIntegerField(primary_key=True, serialize=False)),
                ("event", models.OneToOneField(on_delete=django.db.models.deletion.DO_NOTHING, related_name="seal", to="audit.auditevent")),
                ("content_hash", models.CharField(max_length=64)),
                ("prev_hash", models.CharField(max_length=64)),
                ("hash", models.CharField(max_length=64)),
                ("sealed_at", models.DateTimeField()),
                ("horizon", models.BigIntegerField(blank=True, null=True)),
            ],
            options={**options, "db_table": "audit_seal"},
        ),
        migrations.CreateModel(
            name="AuditCheckpoint",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("seq", models.BigIntegerField()),
                ("hash", models.CharField(max_length=64)),
                ("kind", models.CharField(choices=[("checkpoint", "Checkpoint"), ("archive", "Archive")], default="checkpoint", max_length=16)),
                ("created_at", models.DateTimeField(db_default=django.db.models.functions.datetime.Now())),
                ("document", models.JSONField()),
            ],
            options={
                **options,
                "db_table": "audit_checkpoint",
                "indexes": [models.Index(fields=["seq"], name="audit_checkpoint_seq")],
            },
        ),
        migrations.CreateModel(
            name="ChangeRecord",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("occurred_at", models.DateTimeField(db_default=django.db.models.functions.datetime.Now())),
                ("txid", models.BigIntegerField(blank=True, editable=False, null=True)),
                ("table_name", models.CharField(max_length=128)),
                ("row_pk", models.CharField(max_length=64)),
                ("operation", models.CharField(max_length=8)),
                ("fields", models.JSONField(default=list)),
            ],
            options={
                **options,
                "db_table": "audit_change",
                "indexes": [models.Index(fields=["table_name", "row_pk"], name="audit_change_row")],
            },
        ),
    ]


def _drop_triggers(apps, schema_editor):
    """Reverse: nothing to do; dropping the tables drops their triggers."""


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=_models(managed=False),
            database_operations=_models(managed=True),
        ),
        migrations.RunPython(audit.db.migrate_install, _drop_triggers),
    ]
