"""The access trail: one row per read, write, export, denial or security event.

Four append-only tables (the database refuses UPDATE, DELETE and TRUNCATE on each, see
``audit/db.py``):

- ``AuditEvent``: what happened, written in the same transaction as the change it describes.
  Its ``occurred_at`` (and on PostgreSQL its ``txid``) come from the database, never from Python.
- ``AuditSeal``: the hash chain. The sealer (``audit.services.audit_seal``) links committed events
  in order: gapless ``seq``, ``prev_hash`` → ``hash``. Writers never wait for it.
- ``AuditCheckpoint``: signed chain heads (Ed25519), so a rewritten or truncated chain shows.
- ``ChangeRecord``: the names (never the values) of the columns changed in a tracked table, written
  by database triggers, so bulk and raw-SQL writes leave a trace too.

The tables are not managed by Django (``managed = False``; migration ``0001`` creates them): the
test runner's and ``manage.py flush``'s TRUNCATE would otherwise be refused by their triggers.
"""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now

from api.auditing import Outcome  # the port's vocabulary: identity records it too
from audit.registry import protected


# The trail itself says who saw whose records: only its own views may serve it.
@protected("audit.event", patient=lambda event: event.patient_id, track_changes=False)
class AuditEvent(models.Model):
    id = models.BigAutoField(primary_key=True)
    occurred_at = models.DateTimeField(db_default=Now())
    # The writing transaction (PostgreSQL ``pg_current_xact_id()``): the sealer's horizon.
    txid = models.BigIntegerField(null=True, blank=True, editable=False)
    actor_id = models.UUIDField(null=True, blank=True)
    actor_role = models.CharField(max_length=32, blank=True)
    actor_label = models.CharField(max_length=32, blank=True)  # "anonymous" / "system"
    session_id = models.UUIDField(null=True, blank=True)  # the token family of the request
    action = models.CharField(max_length=64)
    resource_type = models.CharField(max_length=64, blank=True)
    resource_id = models.CharField(max_length=64, blank=True)
    patient_id = models.UUIDField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.ALLOWED)
    source_ip = models.CharField(max_length=45, blank=True)
    user_agent = models.CharField(max_length=256, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        managed = False
        db_table = "audit_event"
        indexes = [
            models.Index(fields=["patient_id", "id"], name="audit_event_patient"),
            models.Index(fields=["actor_id", "id"], name="audit_event_actor"),
            models.Index(fields=["resource_type", "resource_id"], name="audit_event_resource"),
            models.Index(fields=["occurred_at"], name="audit_event_occurred"),
            models.Index(fields=["txid"], name="audit_event_txid"),
        ]

    def __str__(self) -> str:
        return f"AuditEvent {self.pk}"


class AuditSeal(models.Model):
    """The chain link of one event: ``hash = link_hash(prev_hash, seq, content_hash, …)``."""

    seq = models.BigIntegerField(primary_key=True)
    event = models.OneToOneField(AuditEvent, on_delete=models.DO_NOTHING, related_name="seal")
    content_hash = models.CharField(max_length=64)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)
    sealed_at = models.DateTimeField()
    # PostgreSQL: every event of a transaction older than this was committed (or rolled back)
    # before the sealing run that wrote this row; the next run starts from it.
    horizon = models.BigIntegerField(null=True, blank=True)

    class Meta:
        managed = False
        db_table = "audit_seal"

    def __str__(self) -> str:
        return f"AuditSeal {self.seq}"


class AuditCheckpoint(models.Model):
    """A signed chain head. ``kind`` "archive" marks where archived (removed) history ends."""

    class Kind(models.TextChoices):
        CHECKPOINT = "checkpoint"
        ARCHIVE = "archive"

    id = models.BigAutoField(primary_key=True)
    seq = models.BigIntegerField()
    hash = models.CharField(max_length=64)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.CHECKPOINT)
    created_at = models.DateTimeField(db_default=Now())
    # The signed document, exactly as handed out (``audit.signing.head_document``).
    document = models.JSONField()

    class Meta:
        managed = False
        db_table = "audit_checkpoint"
        indexes = [models.Index(fields=["seq"], name="audit_checkpoint_seq")]

    def __str__(self) -> str:
        return f"AuditCheckpoint {self.seq}"


class ChangeRecord(models.Model):
    """One row inserted, updated or deleted in a tracked table (written by a trigger)."""

    id = models.BigAutoField(primary_key=True)
    occurred_at = models.DateTimeField(db_default=Now())
    txid = models.BigIntegerField(null=True, blank=True, editable=False)
    table_name = models.CharField(max_length=128)
    row_pk = models.CharField(max_length=64)
    operation = models.CharField(max_length=8)  # insert / update / delete
    fields = models.JSONField(default=list)  # column names only, never values

    class Meta:
        managed = False
        db_table = "audit_change"
        indexes = [models.Index(fields=["table_name", "row_pk"], name="audit_change_row")]

    def __str__(self) -> str:
        return f"ChangeRecord {self.pk}"
