"""``openapi.yaml`` is what the code generates now (``make openapi`` rewrites it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_openapi_yaml_is_up_to_date(tmp_path):
    generated = tmp_path / "openapi.yaml"
    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--file", str(generated), "--validate"],
        cwd=ROOT,
        # Exactly what `make openapi` runs: integer bounds follow the database backend, so the
        # schema is always generated on the default one, whatever this test run uses.
        env={**os.environ, "DJANGO_DEBUG": "1", "DATABASE_URL": ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    committed = (ROOT / "openapi.yaml").read_text(encoding="utf-8")
    assert generated.read_text(encoding="utf-8") == committed, (
        "openapi.yaml differs from what the code generates: run `make openapi` and commit it"
    )


# --- What the document says (API-01, API-02, names) ---------------------------------------------

HTTP_METHODS = ("get", "put", "post", "delete", "patch")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "openapi.yaml").read_text(encoding="utf-8"))


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


def authenticated(operation: dict[str, Any]) -> bool:
    """Any security requirement but the empty one: a token is (or may be) sent."""
    return any(requirement for requirement in operation.get("security", []))


def resolve(document: dict[str, Any], ref_or_object: dict[str, Any]) -> dict[str, Any]:
    ref = ref_or_object.get("$ref")
    if ref is None:
        return ref_or_object
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_api_01_every_authenticated_operation_documents_401(document):
    missing = [
        f"{method} {path}"
        for method, path, operation in operations(document)
        if authenticated(operation) and "401" not in operation["responses"]
    ]
    assert missing == []


def test_api_01_role_or_mfa_operations_document_403_and_path_ids_404(document):
    missing = []
    for method, path, operation in operations(document):
        parameters = [resolve(document, p) for p in operation.get("parameters", [])]
        if any(p["in"] == "path" for p in parameters) and "404" not in operation["responses"]:
            missing.append(f"{method} {path}: 404 (path id)")
        if any(p["name"] == "cursor" for p in parameters) and "404" not in operation["responses"]:
            missing.append(f"{method} {path}: 404 (cursor)")
        if any(p["in"] == "query" for p in parameters) and "400" not in operation["responses"]:
            missing.append(f"{method} {path}: 400 (query)")
        if "requestBody" in operation:
            missing += [
                f"{method} {path}: {code} (body)"
                for code in ("400", "413", "415")
                if code not in operation["responses"]
            ]
    assert missing == []


def test_api_01_the_403_follows_the_permission_classes():
    """A role or MFA answers 403; an open or any-factor endpoint never does."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    paths = schema["paths"]
    assert "403" in paths["/api/v1/bookings/{booking_id}/cancel"]["post"]["responses"]
    assert "403" in paths["/api/v1/audit/events"]["get"]["responses"]
    assert "403" not in paths["/api/v1/me"]["get"]["responses"]
    assert "403" not in paths["/api/v1/therapists/"]["get"]["responses"]


def test_api_01_every_error_response_is_a_problem_document(document):
    schemas = document["components"]["schemas"]
    assert {"type", "title", "status", "detail", "code"} <= set(schemas["Problem"]["required"])
    assert "errors" in schemas["ValidationProblem"]["properties"]
    wrong = []
    for method, path, operation in operations(document):
        for code, response in operation["responses"].items():
            if int(code) < 400:
                continue
            expected = "ValidationProblem" if code == "400" else "Problem"
            content = response.get("content", {})
            schema = content.get("application/problem+json", {}).get("schema", {})
            if list(content) != ["application/problem+json"] or not schema.get("$ref", "").endswith(
                f"/{expected}"
            ):
                wrong.append(f"{method} {path} {code}")
    assert wrong == []


def test_api_02_headers_are_documented(document):
    idempotent_views = idempotent_operations()
    assert len(idempotent_views) >= 10
    wrong = []
    for method, path, operation in operations(document):
        names = {resolve(document, p)["name"] for p in operation.get("parameters", [])}
        if "X-Request-ID" not in names:
            wrong.append(f"{method} {path}: X-Request-ID parameter")
        if ((method, path) in idempotent_views) != ("Idempotency-Key" in names):
            wrong.append(f"{method} {path}: Idempotency-Key")
        for code, response in operation["responses"].items():
            headers = response.get("headers", {})
            if "X-Request-ID" not in headers:
                wrong.append(f"{method} {path} {code}: X-Request-ID")
            if code == "429" and "Retry-After" not in headers:
                wrong.append(f"{method} {path} {code}: Retry-After")
            replayed = (method, path) in idempotent_views and code.startswith("2")
            if replayed != ("Idempotency-Replayed" in headers):
                wrong.append(f"{method} {path} {code}: Idempotency-Replayed")
    assert wrong == []


def idempotent_operations() -> set[tuple[str, str]]:
    """(method, path) of every view method decorated with ``@idempotent``, from the URLconf."""
    from django.urls import URLPattern, URLResolver, get_resolver

    from api.schema import is_idempotent

    found: set[tuple[str, str]] = set()

    def walk(patterns: list[Any], prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern):
                view = getattr(pattern.callback, "view_class", None)
                if view is not None and is_idempotent(getattr(view, "post", None)):
                    path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
                    found.add(("POST", "/" + path))

    walk(get_resolver().url_patterns, "")
    return found


def test_names_are_identifiers_with_a_summary(document):
    wrong = [
        f"{method} {path}: {operation['operationId']!r} {operation.get('summary')!r}"
        for method, path, operation in operations(document)
        if not IDENTIFIER.match(operation["operationId"]) or not operation.get("summary")
    ]
    assert wrong == []
    ids = {operation["operationId"] for _, _, operation in operations(document)}
    assert {"bookings_cancel", "auth_logout", "booking_ics"} <= ids


def test_anonymous_capable_operations_list_the_anonymous_option_first(document):
    for path in ("/api/v1/therapists/", "/api/v1/therapists/{therapist_id}"):
        assert document["paths"][path]["get"]["security"][0] == {}


# --- Requests say what the server enforces (API-03) -------------------------------------------


def test_api_03_the_document_passes_openapi_spec_validator():
    """Including every default against its own schema (a blank default on a pattern failed)."""
    from openapi_spec_validator import validate
    from openapi_spec_validator.readers import read_from_filename

    spec, _ = read_from_filename(str(ROOT / "openapi.yaml"))
    validate(spec)


def component(document: dict[str, Any], name: str) -> dict[str, Any]:
    return document["components"]["schemas"][name]


def test_api_03_strict_request_bodies_refuse_unknown_fields(document):
    """Every request body of a ``StrictInputSerializer`` says ``additionalProperties: false``."""
    loose = []
    for method, path, operation in operations(document):
        if path == "/api/v1/billing/webhooks/stripe":  # Stripe's event, as Stripe sends it
            continue
        content = operation.get("requestBody", {}).get("content", {})
        for media in content.values():
            schema = resolve(document, media["schema"])
            if schema.get("type") == "object" and schema.get("additionalProperties") is not False:
                loose.append(f"{method} {path}")
    assert loose == []


def test_api_03_field_schemas_match_what_is_enforced(document):
    code = component(document, "CodeInputRequest")["properties"]["code"]
    assert code["maxLength"] == 11
    assert re.fullmatch(code["pattern"], "123456") and re.fullmatch(code["pattern"], "abcde-FGHIJ")
    assert not re.fullmatch(code["pattern"], "12345")
    listing = document["paths"]["/api/v1/therapists/"]["get"]
    directory = {p["name"]: p["schema"] for p in listing["parameters"]}
    assert directory["accepting_new_clients"] == {"type": "boolean"}
    assert directory["price_min"]["type"] == directory["price_max"]["type"] == "number"
    assert directory["currency"]["type"] == "string"
    assert directory["page_size"] == {"type": "integer", "minimum": 1}
    assert directory["cursor"] == {"type": "string"}
    photo = component(document, "ProfileFieldsInRequest")["properties"]["photo_url"]["oneOf"]
    assert [b for b in photo if b.get("enum") == [""]] and all(
        b.get("minLength", 0) >= 1 for b in photo if "enum" not in b
    )


def test_api_04_a_patch_body_is_partial_only_where_the_view_makes_it_so(document):
    """drf-spectacular makes every PATCH body partial; editing a message needs its body, as
    the view's serializer does (schemathesis's valid ``{}`` was a 400)."""
    paths = document["paths"]
    edit = paths["/api/v1/conversations/{conversation_id}/messages/{message_id}"]["patch"]
    body = edit["requestBody"]
    assert body["required"] is True
    schema = resolve(document, body["content"]["application/json"]["schema"])
    assert schema["required"] == ["body"]
    # Views that validate with partial=True keep a partial body.
    for path in ("/api/v1/me", "/api/v1/therapists/me/profile"):
        schema = resolve(
            document, paths[path]["patch"]["requestBody"]["content"]["application/json"]["schema"]
        )
        assert "required" not in schema, path


# --- Responses say what the server returns (API-05) -------------------------------------------


def enum_of(document: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    """Every value an enum-typed property allows (through $ref, allOf and oneOf)."""
    schema = resolve(document, schema)
    values = set(schema.get("enum", []))
    for branch in schema.get("allOf", []) + schema.get("oneOf", []):
        values |= enum_of(document, branch)
    return values


def test_api_05_unsealed_events_and_enum_like_fields_are_described(document):
    event = component(document, "AuditEventOut")["properties"]
    assert event["seq"]["nullable"] is True and event["hash"]["nullable"] is True
    expected = {
        ("Me", "role"): {"client", "therapist", "compliance_officer", "admin"},
        ("TermsOut", "late_fee_kind"): {"none", "percent", "fixed"},
        ("BookedSessionTypeOut", "delivery"): {"video", "audio", "in_person"},
        ("TransitionOut", "from_status"): {"", "held", "confirmed", "cancelled"},
        ("SetupOut", "state"): {"requires_payment_method", "succeeded", "canceled"},
        ("AccessorOut", "role"): {"client", "therapist", "system", "anonymous"},
    }
    for (name, field), values in expected.items():
        assert values <= enum_of(document, component(document, name)["properties"][field]), name
    slot = component(document, "SlotOut")["properties"]
    assert slot["start"]["format"] == slot["end"]["format"] == "date-time"


def test_sign_in_result_is_a_union_clients_can_narrow_on_mfa_required(document):
    result = component(document, "SignInResult")
    assert result["discriminator"]["propertyName"] == "mfa_required"
    for literal, ref in result["discriminator"]["mapping"].items():
        branch = resolve(document, {"$ref": ref})
        assert enum_of(document, branch["properties"]["mfa_required"]) == {literal == "true"}
        assert "mfa_required" in branch["required"]
