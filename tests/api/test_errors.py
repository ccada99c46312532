"""Errors are RFC 9457 problem documents; unexpected ones say nothing about the inside (GEN-01),
and a database failure during a write leaves no partial state (GEN-04).

The views below are test-only, mounted in front of the real routes and error handlers.
"""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import OperationalError, connection, transaction
from django.http import HttpRequest, HttpResponse
from django.urls import path
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

import api.urls
from api.errors import (
    ConflictError,
    DomainError,
    ForbiddenError,
    NotFoundError,
    TooManyRequestsError,
    UnauthorizedError,
    UnprocessableError,
)
from api.idempotency import idempotent
from api.models import IdempotencyRecord, Role, User
from api.serializers import StrictInputSerializer
from audit.models import AuditEvent
from audit.services import audit_record
from tests.factories import issue_access_token, make_user

# What an unexpected exception might carry: none of it may reach a response.
LEAKY_SQL = 'SELECT "password" FROM "api_user" WHERE "email" = \'someone@example.test\''
LEAKY_KEY = "-----BEGIN PRIVATE KEY-----MC4CAQAwBQYDK2VwBCIEI"
LEAKY_PATH = "/work/main/api/services/secret_module.py"


class Open(APIView):
    authentication_classes = ()
    permission_classes = (AllowAny,)


class CrashView(Open):
    def get(self, request):
        token = request.query_params.get("t", "")
        raise RuntimeError(f"boom in {LEAKY_PATH}: {LEAKY_SQL} {LEAKY_KEY} Bearer {token}")


class DatabaseCrashView(Open):
    def get(self, request):
        with connection.cursor() as cursor:
            cursor.execute("SELECT secret_column FROM table_that_does_not_exist")
        return Response({})


def plain_django_crash(request: HttpRequest) -> HttpResponse:
    raise KeyError(LEAKY_KEY)


class DomainErrorView(Open):
    errors = {
        "not_found": NotFoundError(),
        "conflict": ConflictError("The slot is taken.", code="slot_taken"),
        "forbidden": ForbiddenError(),
        "unprocessable": UnprocessableError("Cannot cancel a completed booking."),
        "unauthorized": UnauthorizedError(),
        "too_many": TooManyRequestsError(retry_after=7),
        "base": DomainError(),
    }

    def get(self, request, name):
        raise self.errors[name]


class AddressInput(serializers.Serializer):
    city = serializers.CharField()


class SignupInput(StrictInputSerializer):
    email = serializers.EmailField()
    age = serializers.IntegerField(min_value=0)
    address = AddressInput()
    tags = serializers.ListField(child=serializers.CharField(max_length=3))
    contacts = AddressInput(many=True, required=False)


class ValidatingView(Open):
    def post(self, request):
        SignupInput(data=request.data).is_valid(raise_exception=True)
        return Response({"ok": True})


class ProtectedView(APIView):
    """Uses the project defaults: JWT authentication, MFA-aware permission."""

    def get(self, request):
        return Response({"ok": True})


def thing_create(*, email: str) -> User:
    """A write and its audit row in one transaction, the way every service writes."""
    with transaction.atomic():
        user = User.objects.create_user(email, None, role=Role.CLIENT)
        audit_record(
            action="test.thing.created",
            actor_label="system",
            resource_type="user",
            resource_id=str(user.pk),
        )
    return user


class ThingCreateView(Open):
    @idempotent
    def post(self, request):
        user = thing_create(email=request.data["email"])
        return Response({"id": str(user.pk)}, status=201)


class RowUpdateView(Open):
    """Creates one row, then updates another that someone else has locked (PostgreSQL)."""

    def post(self, request):
        with transaction.atomic():
            User.objects.create_user(request.data["email"], None, role=Role.CLIENT)
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '50ms'")
            User.objects.filter(pk=request.data["locked"]).update(full_name="Changed")
        return Response({}, status=201)


urlpatterns = [
    path("api/v1/_test/crash", CrashView.as_view()),
    path("api/v1/_test/db-crash", DatabaseCrashView.as_view()),
    path("api/v1/_test/plain-crash", plain_django_crash),
    path("api/v1/_test/domain/<str:name>", DomainErrorView.as_view()),
    path("api/v1/_test/validate", ValidatingView.as_view()),
    path("api/v1/_test/protected", ProtectedView.as_view()),
    path("api/v1/_test/things", ThingCreateView.as_view()),
    path("api/v1/_test/locked-update", RowUpdateView.as_view()),
    *api.urls.urlpatterns,
]
handler400 = api.urls.handler400
handler403 = api.urls.handler403
handler404 = api.urls.handler404
handler500 = api.urls.handler500

pytestmark = pytest.mark.urls(__name__)

PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "instance", "request_id"}


@pytest.fixture
def api(anon_api):
    anon_api.raise_request_exception = False
    return anon_api


def assert_generic_500(response) -> None:
    assert response.status_code == 500
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert set(body) == PROBLEM_KEYS
    assert body["code"] == "server_error"
    assert body["type"] == "urn:telehealth:problem:server_error"
    assert body["detail"] == "An unexpected error occurred. It has been logged."
    assert body["request_id"] == response["X-Request-ID"]
    text = response.content.decode()
    for leak in ("Traceback", "boom", "SELECT", "api_user", "PRIVATE KEY", ".py", "Bearer"):
        assert leak not in text


# --- GEN-01: unexpected errors ---------------------------------------------------------------


@pytest.mark.django_db
def test_gen_01_unexpected_exception_is_a_generic_problem(api):
    token = issue_access_token(make_user())
    response = api.get(f"/api/v1/_test/crash?t={token}")
    assert_generic_500(response)
    assert token not in response.content.decode()
    assert response.json()["instance"] == "/api/v1/_test/crash"  # the path, never the query


@pytest.mark.django_db
def test_gen_01_database_error_shows_no_sql(api):
    response = api.get("/api/v1/_test/db-crash")
    assert_generic_500(response)
    assert b"secret_column" not in response.content
    assert b"table_that_does_not_exist" not in response.content


@pytest.mark.django_db
def test_gen_01_error_outside_drf_is_the_same_generic_problem(api):
    assert_generic_500(api.get("/api/v1/_test/plain-crash"))


@pytest.mark.django_db
def test_gen_01_unexpected_error_is_not_stored_in_cache_headers(api):
    response = api.get("/api/v1/_test/crash")
    assert response["Cache-Control"] == "no-store"


# --- The problem document ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("not_found", 404, "not_found"),
        ("conflict", 409, "slot_taken"),
        ("forbidden", 403, "permission_denied"),
        ("unprocessable", 422, "unprocessable"),
        ("unauthorized", 401, "not_authenticated"),
        ("too_many", 429, "too_many_requests"),
        ("base", 400, "bad_request"),
    ],
)
def test_domain_errors_map_to_status_and_stable_code(api, name, status, code):
    response = api.get(f"/api/v1/_test/domain/{name}", HTTP_X_REQUEST_ID="req-12345678")
    assert response.status_code == status
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert PROBLEM_KEYS <= set(body)
    assert body["type"] == f"urn:telehealth:problem:{code}"
    assert body["code"] == code
    assert body["status"] == status
    assert body["instance"] == f"/api/v1/_test/domain/{name}"
    assert body["request_id"] == "req-12345678"
    assert body["title"] and body["detail"]


def test_domain_error_keeps_its_detail():
    response_detail = DomainErrorView.errors["conflict"].detail
    assert response_detail == "The slot is taken."


def test_too_many_requests_says_when_to_retry(api):
    response = api.get("/api/v1/_test/domain/too_many")
    assert response["Retry-After"] == "7"
    assert response.json()["retry_after"] == 7


def test_validation_errors_list_every_field_with_a_path(api):
    response = api.post(
        "/api/v1/_test/validate",
        {
            "email": "not-an-email",
            "age": -1,
            "address": {},
            "tags": ["ok", "toolong"],
            "contacts": [{"city": "A"}, {"city": ""}],
        },
        format="json",
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["type"] == "urn:telehealth:problem:validation_error"
    errors = {(e["field"], e["code"]) for e in body["errors"]}
    assert errors == {
        ("email", "invalid"),
        ("age", "min_value"),
        ("address.city", "required"),
        ("tags[1]", "max_length"),
        ("contacts[1].city", "blank"),
    }
    assert all(e["message"] for e in body["errors"])


def test_unknown_fields_are_refused_by_name(api):
    response = api.post(
        "/api/v1/_test/validate",
        {
            "email": "a@example.test",
            "age": 1,
            "address": {"city": "X"},
            "tags": [],
            "role": "admin",
        },
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "role", "code": "unknown_field", "message": "This field is not allowed."}
    ]


def test_wrong_types_are_field_errors_not_500(api):
    response = api.post(
        "/api/v1/_test/validate",
        {"email": ["x"], "age": "many", "address": "street", "tags": "abc"},
        format="json",
    )
    assert response.status_code == 400
    assert {e["field"] for e in response.json()["errors"]} == {"email", "age", "address", "tags"}


def test_non_object_body_is_a_validation_problem(api):
    response = api.post("/api/v1/_test/validate", [1, 2], format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


@pytest.mark.django_db
def test_missing_token_is_401_with_a_challenge(api):
    response = api.get("/api/v1/_test/protected")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.django_db
def test_garbage_token_is_401_and_not_echoed(api):
    response = api.get("/api/v1/_test/protected", HTTP_AUTHORIZATION="Bearer abc.def.ghi")
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"
    assert b"abc.def.ghi" not in response.content


def test_wrong_method_is_405_problem(api):
    response = api.delete("/api/v1/_test/validate")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    assert response["Content-Type"] == "application/problem+json"


# --- GEN-04: the database fails in the middle of a write -------------------------------------


def fail_audit_insert(execute, sql, params, many, context):
    """Make the database refuse the audit insert the way a deadlock or an outage would."""
    if sql.lstrip().upper().startswith("INSERT") and AuditEvent._meta.db_table in sql:
        raise OperationalError("deadlock detected\nDETAIL: Process 4242 waits for ShareLock")
    return execute(sql, params, many, context)


@pytest.mark.django_db
def test_gen_04_failure_during_audit_rolls_back_the_write(api):
    users, events = User.objects.count(), AuditEvent.objects.count()
    with connection.execute_wrapper(fail_audit_insert):
        response = api.post("/api/v1/_test/things", {"email": "thing@example.test"}, format="json")
    assert_generic_500(response)
    assert b"deadlock" not in response.content
    assert User.objects.count() == users
    assert not User.objects.filter(email="thing@example.test").exists()
    assert AuditEvent.objects.count() == events


@pytest.mark.django_db
def test_gen_04_a_failed_write_can_be_retried_with_the_same_idempotency_key(api):
    body, key = {"email": "retry@example.test"}, "retry-" + uuid.uuid4().hex
    with connection.execute_wrapper(fail_audit_insert):
        failed = api.post("/api/v1/_test/things", body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert failed.status_code == 500
    assert not IdempotencyRecord.objects.filter(key=key).exists()

    retried = api.post("/api/v1/_test/things", body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert retried.status_code == 201
    assert User.objects.filter(email="retry@example.test").count() == 1
    assert AuditEvent.objects.filter(resource_id=retried.json()["id"]).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_gen_04_lock_timeout_from_postgresql_is_a_clean_500_and_rolls_back(api):
    """A real database error (lock_timeout while another transaction holds the row)."""
    victim = make_user()
    locked, release = threading.Event(), threading.Event()

    def hold_row_lock() -> None:
        try:
            with transaction.atomic():
                User.objects.select_for_update().get(pk=victim.pk)
                locked.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_row_lock)
    holder.start()
    try:
        assert locked.wait(timeout=30)
        response = api.post(
            "/api/v1/_test/locked-update",
            {"email": "half-done@example.test", "locked": str(victim.pk)},
            format="json",
        )
    finally:
        release.set()
        holder.join(timeout=30)
    assert_generic_500(response)
    assert not User.objects.filter(email="half-done@example.test").exists()
    victim.refresh_from_db()
    assert victim.full_name != "Changed"


def test_extra_problem_members_never_replace_the_standard_ones():
    from api.errors import problem_body

    body = problem_body(status_code=409, code="conflict", detail="No.", status="cancelled")
    assert (body["status"], body["code"], body["detail"]) == (409, "conflict", "No.")


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize(
    "url", ["/api/v1/no-such-route", "/api/v1/bookings/not-a-uuid", "/api/v1/video/rooms/1/join"]
)
def test_api_06_unknown_routes_under_api_are_problems_in_every_mode(
    client, settings, debug: bool, url: str
) -> None:
    """API-06: with DEBUG on (`make run`) Django answered these with its HTML debug page."""
    settings.DEBUG = debug
    response = client.get(url)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"
    assert response["X-Request-ID"]


def test_api_06_pages_outside_the_api_keep_djangos_answer(client, settings) -> None:
    settings.DEBUG = True
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
