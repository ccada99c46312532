"""The REST conventions every app shares: ``/api/v1/``, no caching of API answers (GEN-03), no
PHI in URLs (GEN-03), cursor pagination, CORS for configured origins only, request ids and
security headers. Test-only views stand in where no real endpoint exists yet.
"""

from __future__ import annotations

import base64
import re
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import override_settings
from django.urls import path
from drf_spectacular.generators import SchemaGenerator
from rest_framework import generics, serializers
from rest_framework.permissions import AllowAny

import api.urls
from api import crypto
from api.models import User


class UserRowSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ("id",)


class UserListView(generics.ListAPIView):
    authentication_classes = ()
    permission_classes = (AllowAny,)
    serializer_class = UserRowSerializer
    queryset = User.objects.all()


urlpatterns = [path("api/v1/_test/rows", UserListView.as_view()), *api.urls.urlpatterns]
handler404 = api.urls.handler404
handler500 = api.urls.handler500

pytestmark = pytest.mark.urls(__name__)

LIST_URL = "/api/v1/_test/rows"
WEB_APP = "https://app.example.test"

# Names that would put protected data or credentials into a URL (and so into proxy logs,
# browser history and Referer headers).
PHI_PARAMETER_NAMES = {
    "email",
    "name",
    "full_name",
    "first_name",
    "last_name",
    "dob",
    "birth_date",
    "date_of_birth",
    "phone",
    "address",
    "note",
    "notes",
    "diagnosis",
    "ssn",
    "mrn",
    "password",
    "token",
    "access",
    "refresh",
    "code",
    "otp",
    "secret",
}

# Capability URLs, the one accepted kind of secret in a URL: calendar apps subscribe only by URL.
# The feed token is random, revocable, and opens nothing but that read-only feed.
CAPABILITY_URLS = {"GET /api/v1/calendars/{token}.ics"}


def real_schema() -> dict:
    """The OpenAPI document of the real routes (not this module's test views)."""
    return SchemaGenerator(urlconf="api.urls").get_schema(request=None, public=True)


def add_rows(count: int) -> set[str]:
    """Users without a password hash: cheap rows to page through."""
    users = User.objects.bulk_create(
        User(email=f"row-{uuid.uuid4().hex}@example.test") for _ in range(count)
    )
    return {str(user.pk) for user in users}


def cursor_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["cursor"][0]


def cursor_fields(url: str) -> dict[str, list[str]]:
    return parse_qs(crypto.decrypt(cursor_of(url), associated_data=b"pagination-cursor"))


# --- GEN-03 -----------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url", [LIST_URL, "/api/v1/does-not-exist", "/api/v1/_test/rows?cursor=bad"]
)
def test_gen_03_api_answers_are_never_cached(anon_api, url):
    response = anon_api.get(url)
    assert response["Cache-Control"] == "no-store"
    assert response["Pragma"] == "no-cache"


@pytest.mark.django_db
def test_gen_03_authenticated_answers_are_never_cached(client_api):
    response = client_api.get(LIST_URL)
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"


def test_gen_03_no_route_takes_phi_or_credentials_in_its_url():
    offending = [
        f"{method.upper()} {route} ({parameter['in']} {parameter['name']})"
        for route, operations in real_schema()["paths"].items()
        for method, operation in operations.items()
        for parameter in operation.get("parameters", [])
        if parameter["in"] in ("query", "path")
        and parameter["name"].lower().replace("-", "_") in PHI_PARAMETER_NAMES
        and f"{method.upper()} {route}" not in CAPABILITY_URLS
    ]
    assert offending == []


@pytest.mark.django_db
def test_gen_03_pagination_cursor_is_sealed_and_opaque(anon_api):
    """The cursor holds the ordering field's value (a booking's start time, for bookings), so
    it is encrypted: nothing of the position can be read from the URL or a log."""
    add_rows(3)
    response = anon_api.get(LIST_URL, {"page_size": 1})
    fields = cursor_fields(response.json()["next"])
    assert set(fields) <= {"p", "o", "r"}
    position = fields["p"][0]
    assert User.objects.filter(pk=position).exists()
    assert position not in response.json()["next"]
    assert "example.test" not in response.json()["next"]


# --- /api/v1/ ---------------------------------------------------------------------------------


def test_every_documented_route_is_under_api_v1():
    assert [route for route in real_schema()["paths"] if not route.startswith("/api/v1/")] == []


# --- Cursor pagination ------------------------------------------------------------------------


@pytest.mark.django_db
def test_cursor_pagination_walks_every_row_once(anon_api):
    ids = add_rows(5)
    seen: list[str] = []
    url: str | None = f"{LIST_URL}?page_size=2"
    pages = 0
    while url:
        body = anon_api.get(url).json()
        assert set(body) == {"next", "previous", "results"}
        seen.extend(row["id"] for row in body["results"])
        url, pages = body["next"], pages + 1
    assert pages == 3
    assert sorted(seen) == sorted(ids)
    assert seen == sorted(seen, reverse=True)  # ordered by -pk


@pytest.mark.django_db
def test_cursor_pagination_never_repeats_or_skips_rows_when_rows_are_added_meanwhile(anon_api):
    before = add_rows(6)
    body = anon_api.get(LIST_URL, {"page_size": 3}).json()
    seen = [row["id"] for row in body["results"]]
    add_rows(4)
    while body["next"]:
        body = anon_api.get(body["next"]).json()
        seen.extend(row["id"] for row in body["results"])
    assert len(seen) == len(set(seen))
    assert before <= set(seen)


@pytest.mark.django_db
def test_page_size_is_capped(anon_api):
    add_rows(205)
    body = anon_api.get(LIST_URL, {"page_size": 1000}).json()
    assert len(body["results"]) == 200
    assert body["next"] is not None


def forged(query: str) -> str:
    """DRF's own (unsealed) cursor format: refused now that cursors are sealed."""
    return base64.b64encode(query.encode()).decode()


def sealed(query: str) -> str:
    return crypto.encrypt(query, associated_data=b"pagination-cursor")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "cursor",
    [
        "bad",
        "a" * 3000,
        forged("p=" + "0" * 8),
        sealed("p=not-a-uuid"),
        sealed("p=%FF"),
        sealed("o=x"),
        crypto.encrypt("o=0", associated_data=b"another-purpose"),
    ],
    ids=[
        "not sealed",
        "long",
        "unsealed DRF cursor",
        "position of the wrong type",
        "bad bytes",
        "NaN offset",
        "sealed for another purpose",
    ],
)
def test_a_forged_cursor_is_a_problem_not_a_500(anon_api, cursor):
    add_rows(1)
    response = anon_api.get(LIST_URL, {"cursor": cursor})
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"


@pytest.mark.django_db
@pytest.mark.parametrize("page_size", ["-1", "0", "abc", "1e9", "٣", "9" * 5000])
def test_api_03_a_nonsense_page_size_is_a_400_naming_it(anon_api, page_size):
    add_rows(1)
    response = anon_api.get(LIST_URL, {"page_size": page_size})
    if page_size.startswith("9"):  # a huge number is the maximum, like 1000
        assert response.status_code == 200
        return
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == ["page_size"]


# --- CORS -------------------------------------------------------------------------------------


@pytest.mark.django_db
@override_settings(CORS_ALLOWED_ORIGINS=[WEB_APP])
def test_cors_allows_a_configured_origin_and_exposes_our_headers(anon_api):
    response = anon_api.get(LIST_URL, HTTP_ORIGIN=WEB_APP)
    assert response["Access-Control-Allow-Origin"] == WEB_APP
    exposed = {h.strip().lower() for h in response["Access-Control-Expose-Headers"].split(",")}
    assert exposed == {"x-request-id", "idempotency-replayed"}
    assert "Access-Control-Allow-Credentials" not in response


@pytest.mark.django_db
@override_settings(CORS_ALLOWED_ORIGINS=[WEB_APP])
@pytest.mark.parametrize(
    "origin", ["https://evil.example.test", "http://app.example.test", f"{WEB_APP}.evil.test"]
)
def test_cors_ignores_other_origins(anon_api, origin):
    response = anon_api.get(LIST_URL, HTTP_ORIGIN=origin)
    assert "Access-Control-Allow-Origin" not in response


@override_settings(CORS_ALLOWED_ORIGINS=[WEB_APP])
def test_cors_preflight_allows_the_headers_clients_send(anon_api):
    response = anon_api.options(
        LIST_URL,
        HTTP_ORIGIN=WEB_APP,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type, idempotency-key",
    )
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == WEB_APP
    allowed = {h.strip().lower() for h in response["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "idempotency-key", "x-request-id"} <= allowed


def test_cors_allows_no_origin_by_default(anon_api, settings):
    assert settings.CORS_ALLOWED_ORIGINS == []
    response = anon_api.get("/healthz", HTTP_ORIGIN=WEB_APP)
    assert "Access-Control-Allow-Origin" not in response


# --- Request ids and headers ------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/healthz", "/api/v1/does-not-exist"])
def test_an_offered_request_id_is_echoed(anon_api, url):
    response = anon_api.get(url, HTTP_X_REQUEST_ID="edge-7f3a9c21-0001")
    assert response["X-Request-ID"] == "edge-7f3a9c21-0001"


@pytest.mark.parametrize(
    "offered",
    ["", "short", "has space in it", "x" * 65, "inject\r\nSet-Cookie: a=b", "<script>x</script>"],
    ids=["empty", "too short", "space", "too long", "CRLF", "markup"],
)
def test_a_malformed_request_id_is_replaced(anon_api, offered):
    response = anon_api.get("/healthz", HTTP_X_REQUEST_ID=offered)
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


def test_each_request_gets_its_own_id(anon_api):
    assert anon_api.get("/healthz")["X-Request-ID"] != anon_api.get("/healthz")["X-Request-ID"]


@pytest.mark.django_db
def test_security_headers_are_set(anon_api):
    response = anon_api.get(LIST_URL)
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "no-referrer"
    assert response["X-Frame-Options"] == "DENY"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("caller", "url"),
    [
        ("client_api", "/api/v1/bookings/"),
        ("therapist_api", "/api/v1/billing/payments"),
        ("client_api", "/api/v1/me/access-log"),
        ("anon_api", "/api/v1/therapists/"),
        ("compliance_api", "/api/v1/audit/events"),
    ],
)
def test_api_03_every_list_refuses_a_nonsense_page_size(request, caller, url):
    api = request.getfixturevalue(caller)
    assert api.get(url, {"page_size": "2"}).status_code == 200
    response = api.get(url, {"page_size": "abc"})
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["page_size"]
