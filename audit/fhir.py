"""Audit events as FHIR R4 AuditEvent resources (IHE Basic Audit Log Patterns shape).

Every column maps somewhere, so the export loses nothing (table in ``docs/audit.md``): the
exact action code is kept as a second ``subtype`` coding beside the standard one, and the chain
fields and request context travel as ``entity.detail`` entries.
"""

from __future__ import annotations

from typing import Any

from audit.canonical import canonical_json, utc_timestamp

DCM = "http://dicom.nema.org/resources/ontology/DCM"
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
SECURITY_ROLE = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
ACTION_SYSTEM = "urn:telehealth:audit-action"
OBSERVER = "telehealth-api"

# action → (FHIR action code, restful-interaction subtype)
_REST = {
    "read": ("R", "read"),
    "list": ("E", "search-type"),
    "create": ("C", "create"),
    "update": ("U", "update"),
    "delete": ("D", "delete"),
}
_OUTCOME = {"allowed": "0", "denied": "4", "error": "8"}


def _event_type(action: str) -> tuple[dict[str, str], str, list[dict[str, str]]]:
    """(type coding, action code, standard subtype codings) of one of our action codes."""
    if action in _REST:
        code, interaction = _REST[action]
        rest = {"system": EVENT_TYPE, "code": "rest", "display": "RESTful Operation"}
        return rest, code, [{"system": RESTFUL, "code": interaction}]
    if action.startswith("auth."):
        auth = {"system": DCM, "code": "110114", "display": "User Authentication"}
        if action.startswith("auth.login"):
            return auth, "E", [{"system": DCM, "code": "110122", "display": "Login"}]
        if action.startswith("auth.logout"):
            return auth, "E", [{"system": DCM, "code": "110123", "display": "Logout"}]
        return auth, "E", []
    if action == "audit.export":
        return {"system": DCM, "code": "110106", "display": "Export"}, "R", []
    if action.startswith("audit."):
        return {"system": DCM, "code": "110101", "display": "Audit Log Used"}, "R", []
    application = {"system": EVENT_TYPE, "code": "rest", "display": "RESTful Operation"}
    return application, "E", []


def _detail(kind: str, value: Any) -> dict[str, str]:
    return {"type": kind, "valueString": str(value)}


def audit_event_resource(row: dict[str, Any]) -> dict[str, Any]:
    """One sealed event row (``audit.selectors.sealed_rows``) as a FHIR R4 AuditEvent."""
    action = row["action"]
    type_coding, action_code, subtypes = _event_type(action)
    agent: dict[str, Any] = {
        "type": {"coding": [{"system": SECURITY_ROLE, "code": "humanuser"}]},
        "requestor": True,
    }
    if row["actor_id"] is not None:
        agent["who"] = {
            "identifier": {"system": "urn:telehealth:user", "value": str(row["actor_id"])}
        }
    else:
        agent["who"] = {"display": row["actor_label"] or "anonymous"}
        agent["type"] = {"coding": [{"system": SECURITY_ROLE, "code": "dataprocessor"}]}
    if row["actor_role"]:
        agent["role"] = [{"coding": [{"system": "urn:telehealth:role", "code": row["actor_role"]}]}]
    if row["source_ip"]:
        agent["network"] = {"address": row["source_ip"], "type": "2"}

    entities: list[dict[str, Any]] = []
    if row["patient_id"] is not None:
        entities.append(
            {
                "what": {
                    "identifier": {
                        "system": "urn:telehealth:patient",
                        "value": str(row["patient_id"]),
                    }
                },
                "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
                "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
            }
        )
    if row["resource_type"]:
        what: dict[str, Any] = {"display": row["resource_type"]}
        if row["resource_id"]:
            what["identifier"] = {
                "system": f"urn:telehealth:{row['resource_type']}",
                "value": row["resource_id"],
            }
        entities.append(
            {
                "what": what,
                "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
                "detail": [_detail("details", canonical_json(row["details"]).decode())],
            }
        )
    context = [
        _detail("event-id", row["id"]),
        _detail("seq", row["seq"]),
        _detail("content-hash", row["content_hash"]),
        _detail("prev-hash", row["prev_hash"]),
        _detail("hash", row["hash"]),
        _detail("sealed-at", utc_timestamp(row["sealed_at"])),
    ]
    if row["user_agent"]:
        context.append(_detail("user-agent", row["user_agent"]))
    if row["session_id"] is not None:
        context.append(_detail("session", row["session_id"]))
    request_entity: dict[str, Any] = {
        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        "detail": context,
    }
    if row["request_id"]:
        request_entity["what"] = {
            "identifier": {"system": "urn:telehealth:request", "value": row["request_id"]}
        }
    entities.append(request_entity)

    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(row["seq"]),
        "type": type_coding,
        "subtype": [*subtypes, {"system": ACTION_SYSTEM, "code": action}],
        "action": action_code,
        "recorded": utc_timestamp(row["occurred_at"]),
        "outcome": _OUTCOME.get(row["outcome"], "8"),
        "agent": [agent],
        "source": {
            "observer": {"display": OBSERVER},
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
        "entity": entities,
    }
    reason = (row["details"] or {}).get("reason")
    if row["outcome"] != "allowed" and reason:
        resource["outcomeDesc"] = str(reason)
    return resource


def provenance_resource(
    *, manifest: dict[str, Any], recorded: str, data_b64: str
) -> dict[str, Any]:
    """The signed export manifest as a FHIR Provenance, kept beside the AuditEvent NDJSON it
    describes (Bulk Data: one resource type per file)."""
    signer = {"display": OBSERVER}
    return {
        "resourceType": "Provenance",
        "target": [{"display": f"audit export of {manifest['count']} AuditEvent resources"}],
        "recorded": recorded,
        "agent": [{"who": signer}],
        "signature": [
            {
                "type": [
                    {
                        "system": "urn:iso-astm:E1762-95:2013",
                        "code": "1.2.840.10065.1.12.1.5",
                        "display": "Verification Signature",
                    }
                ],
                "when": recorded,
                "who": signer,
                "sigFormat": "application/json",
                "data": data_b64,
            }
        ],
    }
