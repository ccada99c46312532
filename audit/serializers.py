"""Inputs (query filters) and outputs of the audit endpoints."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from api.models import STAFF_ROLES, Role, User
from api.serializers import OffsetDateTimeField, StrictInputSerializer
from audit.canonical import EVENT_FIELDS
from audit.export import MEDIA_TYPES
from audit.models import AuditEvent, Outcome
from audit.selectors import EventFilters


class EventFilterQuery(StrictInputSerializer):
    since = OffsetDateTimeField(required=False, help_text="Events at or after this time.")
    until = OffsetDateTimeField(required=False, help_text="Events before this time.")
    actor = serializers.UUIDField(required=False, help_text="The acting user's id.")
    client = serializers.UUIDField(required=False, help_text="The client whose records.")
    action = serializers.RegexField(r"^[a-z0-9_.\-]{1,64}$", required=False)
    resource = serializers.RegexField(
        r"^[a-z0-9_.\-]{1,64}(:[A-Za-z0-9_.\-]{1,64})?$",
        required=False,
        help_text='A resource type ("scheduling.booking") or one record ("type:id").',
    )
    outcome = serializers.ChoiceField(choices=Outcome.choices, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        since, until = attrs.get("since"), attrs.get("until")
        if since is not None and until is not None and since >= until:
            raise serializers.ValidationError({"until": ["Must be after since."]})
        return attrs

    def filters(self) -> EventFilters:
        data = self.validated_data
        resource_type, _, resource_id = data.get("resource", "").partition(":")
        return EventFilters(
            since=data.get("since"),
            until=data.get("until"),
            actor_id=data.get("actor"),
            patient_id=data.get("client"),
            action=data.get("action"),
            resource_type=resource_type or None,
            resource_id=resource_id or None,
            outcome=data.get("outcome"),
        )


class EventListQuery(EventFilterQuery):
    cursor = serializers.CharField(required=False, help_text="From the previous page's links.")
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200)


class ExportQuery(EventFilterQuery):
    format = serializers.ChoiceField(choices=sorted(MEDIA_TYPES))


class ExportManifestQuery(EventFilterQuery):
    upto_seq = serializers.IntegerField(
        min_value=0, help_text="The export's head seq (its X-Audit-Chain-Head, before the colon)."
    )


class AuditEventOut(serializers.ModelSerializer):
    seq = serializers.SerializerMethodField(help_text="Position in the chain (null until sealed).")
    hash = serializers.SerializerMethodField(help_text="The chain hash (null until sealed).")
    client_id = serializers.UUIDField(source="patient_id", allow_null=True)

    class Meta:
        model = AuditEvent
        # The event's columns (``EVENT_FIELDS``), its place in the chain after its id, and the
        # patient as the API names them: the client.
        fields = [
            "id",
            "seq",
            "hash",
            *("client_id" if name == "patient_id" else name for name in EVENT_FIELDS[1:]),
        ]

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_seq(self, event: AuditEvent) -> int | None:
        seal = getattr(event, "seal", None)  # a missing seal raises an AttributeError subclass
        return seal.seq if seal is not None else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_hash(self, event: AuditEvent) -> str | None:
        seal = getattr(event, "seal", None)
        return seal.hash if seal is not None else None


# Who acted, when no user did (``actor_label``): anything else reads as "system".
ACCESSOR_LABELS = ("system", "anonymous", "operator", "billing")


class AccessorOut(serializers.Serializer):
    name = serializers.CharField(allow_null=True, help_text="Staff only; null for others.")
    role = serializers.ChoiceField(
        choices=[*Role.values, *ACCESSOR_LABELS],
        help_text="The user's role, or what acted without one (system, operator...).",
    )


class AccessLogEntryOut(serializers.Serializer):
    occurred_at = serializers.DateTimeField()
    action = serializers.CharField()
    resource_type = serializers.CharField()
    accessed_by = serializers.SerializerMethodField()

    @extend_schema_field(AccessorOut)
    def get_accessed_by(self, event: AuditEvent) -> dict[str, Any]:
        actor: User | None = self.context["actors"].get(event.actor_id)
        if actor is None:
            role = event.actor_role or event.actor_label
            known = role in Role.values or role in ACCESSOR_LABELS
            return {"name": None, "role": role if known else "system"}
        staff = actor.role in STAFF_ROLES
        return {"name": actor.full_name if staff else None, "role": actor.role}
