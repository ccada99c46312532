"""The OpenAPI document says what every operation answers and which headers it reads and sets,
from what the view declares, so no view lists them by hand (API-01, API-02).

``ApiAutoSchema`` (the project's ``DEFAULT_SCHEMA_CLASS``) completes each operation that
drf-spectacular builds from the view and its ``extend_schema``:

- statuses from the view itself: 401 when a permission needs a signed-in caller; 403 when it
  can refuse by role or demand a second factor (anything but ``AllowAny`` and
  ``IsAuthenticatedAnyFactor``); 404 for path ids and for a paginated list's cursor; 400 for
  query parameters or a body; 413 and 415 for a body; on an ``@idempotent`` POST 400
  (malformed key), 409 (``idempotency_in_progress``) and 422 (``idempotency_key_reused``);
  what the view's ``extend_schema`` adds (409, 422, 429, 503...) stays;
- every error answer is ``application/problem+json``: ``ValidationProblem`` (a ``Problem``
  with the ``errors`` member) for 400, ``Problem`` for the others;
- headers: ``X-Request-ID`` on every answer (and accepted on every request), ``Retry-After``
  on every 429 and 503, ``Idempotency-Key`` and ``Idempotency-Replayed`` on ``@idempotent``
  POSTs;
- names: operationIds as client methods read (``bookings_cancel``, not
  ``bookings_cancel_create``), a summary on every operation, and ``security`` listing the
  anonymous option first where a caller may be anonymous, so generated clients do not demand
  a token there.

``tests/api/test_openapi.py`` walks the generated document and fails when an operation misses
any of this.
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import (
    ResolvedComponent,
    force_instance,
    get_doc,
    is_list_serializer,
    is_serializer,
)
from rest_framework import permissions

from api.errors import _TITLES, PROBLEM_CONTENT_TYPE
from api.idempotency import HEADER as IDEMPOTENCY_HEADER
from api.permissions import IsAuthenticatedAnyFactor

# Permissions that never answer 403: open, or any signed-in user whatever their factors.
_NEVER_FORBIDS = (permissions.AllowAny, IsAuthenticatedAnyFactor)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# DRF's default names that no client should read (a dot is not an identifier).
OPERATION_IDS = {
    "bookings_.ics_retrieve": "booking_ics",
    "calendars_.ics_retrieve": "calendar_feed_ics",
}
# Summaries for operations whose view states none (``extend_schema(summary=...)`` or the
# handler's docstring win). Redoc and generated clients show them as the operation's title.
SUMMARIES = {
    "admin_licences_list": "List licences for review",
    "admin_licences_verify": "Verify a licence",
    "booking_ics": "Download a booking as an iCalendar invitation",
    "bookings_create": "Book a session (a held booking until paid)",
    "bookings_list": "List my bookings",
    "bookings_retrieve": "Get a booking",
    "bookings_cancel": "Cancel a booking",
    "bookings_complete": "Mark a booking completed",
    "bookings_therapist_no_show": "Record that the therapist did not come",
    "bookings_no_show": "Mark a client as not attending",
    "bookings_note_retrieve": "Read a session note",
    "bookings_note_update": "Write a session note draft",
    "bookings_note_sign": "Sign a session note",
    "bookings_note_versions_retrieve": "List a session note's versions",
    "bookings_reschedule": "Move a booking to another start",
    "bookings_series_create": "Book a weekly or fortnightly series",
    "calendar_feed_ics": "Read a calendar feed (the secret in the path is the credential)",
    "calendars_tokens_list": "List my calendar feed tokens",
    "calendars_tokens_create": "Create a calendar feed URL",
    "calendars_tokens_destroy": "Revoke a calendar feed URL",
    "clients_profile_retrieve": "Get a client's profile (their therapist)",
    "clients_me_profile_retrieve": "Get my client profile",
    "clients_me_profile_update": "Replace my client profile",
    "therapists_list": "Search the therapist directory",
    "therapists_retrieve": "Get a therapist's public profile",
    "therapists_slots_retrieve": "List a therapist's bookable starts",
    "therapists_me_availability_overrides_list": "List my availability overrides",
    "therapists_me_availability_overrides_create": "Add an availability override",
    "therapists_me_availability_overrides_destroy": "Delete an availability override",
    "therapists_me_availability_rules_list": "List my weekly availability",
    "therapists_me_availability_rules_update": "Replace my weekly availability",
    "therapists_me_calendars_list": "List my external calendars",
    "therapists_me_calendars_create": "Add an external calendar (upload or subscribe)",
    "therapists_me_calendars_destroy": "Remove an external calendar",
    "therapists_me_cancellation_policy_retrieve": "Get my cancellation policy",
    "therapists_me_cancellation_policy_update": "Set my cancellation policy",
    "therapists_me_clients_lookup": "Find my client by phone number",
    "therapists_me_licences_list": "List my licences",
    "therapists_me_licences_create": "Add a licence",
    "therapists_me_licences_partial_update": "Update a licence",
    "therapists_me_licences_destroy": "Delete a licence",
    "therapists_me_profile_retrieve": "Get my therapist profile",
    "therapists_me_profile_create": "Create my therapist profile",
    "therapists_me_profile_partial_update": "Update my therapist profile",
    "therapists_me_schedule_retrieve": "Get my schedule for a day, week or range",
    "therapists_me_session_types_list": "List my session types",
    "therapists_me_session_types_create": "Add a session type",
    "therapists_me_session_types_retrieve": "Get a session type",
    "therapists_me_session_types_partial_update": "Update a session type",
    "therapists_me_session_types_destroy": "Archive a session type",
    "therapists_me_settings_retrieve": "Get my booking settings",
    "therapists_me_settings_partial_update": "Update my booking settings",
}
_DESCRIPTIONS = {
    400: "Invalid request: malformed JSON, an unknown or invalid field or parameter",
    401: "Not signed in, or the access token is invalid, expired or revoked",
    403: "Signed in, but not allowed: wrong role, or a second factor is required",
    404: "No such resource for this caller (or an invalid cursor)",
    409: "Conflicts with the current state, or the same Idempotency-Key is still running",
    413: "The request body is too large",
    415: "The request body is not JSON",
    422: "Understood but refused (or an Idempotency-Key reused with another request)",
    429: "Too many requests: retry after Retry-After seconds",
    503: "At capacity for now: retry after Retry-After seconds",
}

REQUEST_ID_HEADER = {
    "description": "The request's id: the client's sane X-Request-ID (8-64 of A-Za-z0-9-) "
    "echoed, or a fresh one. Problem documents carry it as request_id.",
    "schema": {"type": "string"},
}
RETRY_AFTER_HEADER = {
    "description": "Seconds to wait before retrying.",
    "schema": {"type": "integer", "minimum": 0},
}
IDEMPOTENCY_REPLAYED_HEADER = {
    "description": 'Present ("true") when this is the stored answer to an earlier request '
    "with the same Idempotency-Key.",
    "schema": {"type": "string", "enum": ["true"]},
}
REQUEST_ID_PARAMETER = {
    "in": "header",
    "name": "X-Request-ID",
    "required": False,
    "description": "Optional: an id for this request (8-64 of A-Za-z0-9-), echoed in the "
    "response's X-Request-ID; any other value is replaced by a fresh id.",
    "schema": {"type": "string"},
}
IDEMPOTENCY_KEY_PARAMETER = {
    "in": "header",
    "name": IDEMPOTENCY_HEADER,
    "required": False,
    "description": "A random id (a UUID) per logical operation: a retry with the same key and "
    "body gets the stored answer (Idempotency-Replayed: true) instead of running twice.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
}


_EMPTY_STRING = {"type": "string", "maxLength": 0}


def blank_allowed(schema: dict[str, Any]) -> dict[str, Any]:
    """drf-spectacular's ``oneOf: [<the field>, {maxLength: 0}]`` for a string field that may
    also be ``""``, made exact: ``""`` matches one branch only (an unformatted or patterned
    first branch matched it too), and a default ``""`` moves beside the ``oneOf``, where it
    satisfies its schema."""
    branches = schema.get("oneOf")
    if not (isinstance(branches, list) and _EMPTY_STRING in branches):
        return schema
    merged: list[dict[str, Any]] = []
    for branch in branches:
        if branch == _EMPTY_STRING:
            merged.append({"type": "string", "enum": [""]})
            continue
        branch = dict(branch)
        if "default" in branch:
            schema.setdefault("default", branch.pop("default"))
        branch["minLength"] = max(1, branch.get("minLength", 1))
        merged.append(branch)
    schema["oneOf"] = merged
    return schema


def is_idempotent(view_method: Any) -> bool:
    return bool(getattr(view_method, "idempotent", False))


class ApiAutoSchema(AutoSchema):
    def get_operation(
        self, path: str, path_regex: str, path_prefix: str, method: str, registry: Any
    ) -> dict[str, Any] | None:
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        idempotent = is_idempotent(getattr(self.view, method.lower(), None))
        statuses = self._implied_statuses(operation, idempotent=idempotent)
        responses: dict[str, Any] = operation["responses"]
        for status in statuses:
            responses.setdefault(str(status), {})
        for code, response in responses.items():
            self._complete_response(int(code), response, idempotent=idempotent)
        operation["responses"] = dict(sorted(responses.items()))
        parameters = operation.setdefault("parameters", [])
        if idempotent:
            parameters.append(dict(IDEMPOTENCY_KEY_PARAMETER))
        parameters.append(dict(REQUEST_ID_PARAMETER))
        if not operation.get("summary"):
            summary = self._default_summary(operation)
            if summary:
                operation["summary"] = summary
        return operation

    # --- Request and field schemas (API-03) ------------------------------------------------------

    def _get_request_for_media_type(self, serializer: Any, direction: str = "request") -> Any:
        """A PATCH body is partial where the view validates it so (it declares
        ``X(partial=True)``, or ``X`` requires nothing); otherwise it requires what its
        serializer requires, as the view does (``PATCH .../messages/{id}`` needs ``body``).
        drf-spectacular makes every PATCH body partial."""
        instance = force_instance(serializer)
        required = is_serializer(instance) and not is_list_serializer(instance)
        required = required and not instance.partial
        if self.method != "PATCH" or not required:
            return super()._get_request_for_media_type(serializer, direction)
        if not any(field.required for field in instance.fields.values()):
            return super()._get_request_for_media_type(serializer, direction)
        self.method = "PUT"  # the one place drf-spectacular reads the method here
        try:
            return super()._get_request_for_media_type(instance, direction)
        finally:
            self.method = "PATCH"

    def _map_basic_serializer(self, serializer: Any, direction: str) -> dict[str, Any]:
        """A ``StrictInputSerializer`` refuses unknown fields (400): its body says so."""
        from api.serializers import StrictInputSerializer

        schema: dict[str, Any] = super()._map_basic_serializer(serializer, direction)
        if direction == "request" and isinstance(serializer, StrictInputSerializer):
            schema["additionalProperties"] = False
        for field_schema in schema.get("properties", {}).values():
            blank_allowed(field_schema)
        return schema

    # --- Statuses --------------------------------------------------------------------------------

    def _permission_classes(self) -> list[type]:
        return [type(p) for p in self.view.get_permissions()]

    def _implied_statuses(self, operation: dict[str, Any], *, idempotent: bool) -> set[int]:
        statuses: set[int] = set()
        perms = self._permission_classes()
        # Open operations authenticate a token that is sent, so a bad one is a 401 there too.
        if not any(issubclass(p, permissions.AllowAny) for p in perms) or (
            self.view.get_authenticators()
        ):
            statuses.add(401)
        # A role or the second factor a staff account needs: 403 (API-01), open or not.
        if any(not issubclass(p, _NEVER_FORBIDS) for p in perms):
            statuses.add(403)
        parameters = operation.get("parameters", [])
        if any(p.get("in") == "path" for p in parameters):
            statuses.add(404)
        if any(p.get("name") == "cursor" and p.get("in") == "query" for p in parameters):
            statuses.add(404)
        if any(p.get("in") == "query" for p in parameters):
            statuses.add(400)
        if "requestBody" in operation:
            statuses |= {400, 413, 415}
        if idempotent:
            statuses |= {400, 409, 422}
        return statuses

    def _complete_response(self, code: int, response: dict[str, Any], *, idempotent: bool) -> None:
        headers = response.setdefault("headers", {})
        headers["X-Request-ID"] = self._component("headers", "X-Request-ID", REQUEST_ID_HEADER)
        if code in (429, 503):
            headers["Retry-After"] = self._component("headers", "Retry-After", RETRY_AFTER_HEADER)
        if idempotent and 200 <= code < 300:
            headers["Idempotency-Replayed"] = self._component(
                "headers", "Idempotency-Replayed", IDEMPOTENCY_REPLAYED_HEADER
            )
        if code < 400:
            return
        description = response.get("description") or ""
        if not description or description in ("Problem", "No response body"):
            description = _DESCRIPTIONS.get(code, _TITLES.get(code, "Error"))
        response["description"] = description
        schema = "ValidationProblem" if code == 400 else "Problem"
        response["content"] = {
            PROBLEM_CONTENT_TYPE: {"schema": {"$ref": f"#/components/schemas/{schema}"}}
        }
        self._problem_components()

    def _problem_components(self) -> None:
        from api.serializers import ProblemSerializer, ValidationProblemSerializer

        for serializer in (ProblemSerializer, ValidationProblemSerializer):
            self.resolve_serializer(serializer, "response")

    def _component(self, kind: str, name: str, schema: dict[str, Any]) -> dict[str, str]:
        component = ResolvedComponent(name=name, type=kind, object=name, schema=schema)
        self.registry.register_on_missing(component)
        return {"$ref": f"#/components/{kind}/{name}"}

    # --- Names -----------------------------------------------------------------------------------

    def _declared_statuses(self) -> set[int]:
        declared = self.get_response_serializers()
        if not isinstance(declared, dict):
            return set()
        return {int(key[0] if isinstance(key, tuple) else key) for key in declared}

    def get_operation_id(self) -> str:
        """DRF's ``<path>_<action>``, but a POST that creates nothing (no 201) is named by its
        path alone: ``bookings_cancel``, ``auth_logout``."""
        operation_id = super().get_operation_id()
        if self.method == "POST" and operation_id.endswith("_create"):
            creates = 201 in self._declared_statuses() or (
                not self._declared_statuses() and self._is_create_operation()
            )
            if not creates:
                operation_id = operation_id.removesuffix("_create")
        return OPERATION_IDS.get(operation_id, operation_id)

    def _default_summary(self, operation: dict[str, Any]) -> str | None:
        """The handler's docstring (or the view's, when it has one handler) up to its first
        full stop, else ``SUMMARIES``; none fails ``tests/api/test_openapi.py``."""
        view_method = getattr(self.view, self.method.lower(), None)
        doc = get_doc(view_method)
        handlers = [
            m for m in self.view.http_method_names if m != "options" and hasattr(self.view, m)
        ]
        if not doc and len(handlers) == 1:
            doc = get_doc(type(self.view))
        first = " ".join(re.split(r"(?<=\.)\s|\n\n", doc.strip(), maxsplit=1)[0].split())
        if first and len(first) <= 90 and "`" not in first and "(" not in first:
            return first.rstrip(".")
        return SUMMARIES.get(operation["operationId"])

    def get_auth(self) -> list[dict[str, Any]]:
        """The anonymous option first where a caller may be anonymous (generated clients take
        the first requirement as the operation's)."""
        auths = super().get_auth()
        if {} in auths:
            auths = [{}] + [a for a in auths if a != {}]
        return auths
