"""GEN-02: bodies that would become a 500 further in are refused at the parser with 4xx.

Every case posts to a test-only view behind the real middleware, parser and exception handler,
and checks that the answer is a problem document and that the view never ran.
"""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.urls import path
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

import api.urls
from api.serializers import StrictInputSerializer

calls: list[object] = []


class EchoKeysInput(StrictInputSerializer):
    note = serializers.CharField(required=False)


class ParsedView(APIView):
    authentication_classes = ()
    permission_classes = (AllowAny,)

    def post(self, request):
        calls.append(request.data)
        EchoKeysInput(data=request.data).is_valid(raise_exception=True)
        return Response({"ok": True})


urlpatterns = [path("api/v1/_test/parsed", ParsedView.as_view()), *api.urls.urlpatterns]
handler400 = api.urls.handler400
handler500 = api.urls.handler500

pytestmark = [pytest.mark.urls(__name__), pytest.mark.django_db]

URL = "/api/v1/_test/parsed"


@pytest.fixture(autouse=True)
def _reset_calls():
    calls.clear()


def post_raw(client, body: bytes, content_type: str = "application/json"):
    client.raise_request_exception = False
    return client.generic("POST", URL, body, content_type=content_type)


def assert_refused(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"urn:telehealth:problem:{code}"
    assert calls == [], "the view must not run on a refused body"


def nested(depth: int) -> bytes:
    """A JSON value whose innermost scalar sits ``depth`` containers down."""
    return b"[" * depth + b"0" + b"]" * depth


def test_a_well_formed_body_reaches_the_view(anon_api):
    response = post_raw(anon_api, b'{"note": "hello"}')
    assert response.status_code == 200
    assert calls == [{"note": "hello"}]


def test_gen_02_oversized_body_is_413(anon_api):
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = b'{"note": "' + b"a" * limit + b'"}'
    assert_refused(post_raw(anon_api, body), 413, "payload_too_large")


def test_gen_02_body_at_the_size_limit_is_parsed(anon_api):
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    padding = limit - len(b'{"note": ""}')
    response = post_raw(anon_api, b'{"note": "' + b"a" * padding + b'"}')
    assert response.status_code == 200


def test_gen_02_nesting_up_to_the_limit_is_accepted(anon_api):
    response = post_raw(anon_api, nested(settings.JSON_MAX_DEPTH))
    assert response.status_code == 400  # parsed; refused by the serializer, not the parser
    assert response.json()["code"] == "validation_error"
    assert len(calls) == 1


@pytest.mark.parametrize("depth", [33, 1000, 200_000], ids=["limit+1", "1k", "200k"])
def test_gen_02_deep_nesting_is_400(anon_api, depth):
    assert depth > settings.JSON_MAX_DEPTH
    assert_refused(post_raw(anon_api, nested(depth)), 400, "invalid_json")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"note": "caf\xe9"}', id="latin-1 byte"),
        pytest.param(b'{"note": "\xff\xfe"}', id="invalid bytes"),
        pytest.param(b'{"note": "\xed\xa0\x80"}', id="encoded surrogate"),
        pytest.param(b'{"note": "\\ud800"}', id="escaped lone surrogate"),
        pytest.param(b'{"\\udfff": 1}', id="lone surrogate in a key"),
    ],
)
def test_gen_02_invalid_utf8_or_unencodable_text_is_400(anon_api, body):
    assert_refused(post_raw(anon_api, body), 400, "invalid_json")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"note": "a\x00b"}', id="raw NUL byte"),
        pytest.param(b'{"note": "a\\u0000b"}', id="escaped NUL in a value"),
        pytest.param(b'{"a\\u0000": 1}', id="escaped NUL in a key"),
        pytest.param(b'{"list": [["\\u0000"]]}', id="NUL deep inside"),
    ],
)
def test_gen_02_nul_characters_are_400(anon_api, body):
    assert_refused(post_raw(anon_api, body), 400, "invalid_json")


def test_gen_02_duplicate_keys_are_400(anon_api):
    assert_refused(post_raw(anon_api, b'{"note": "a", "note": "b"}'), 400, "invalid_json")


@pytest.mark.parametrize(
    "literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999"], ids=bytes.decode
)
def test_gen_02_non_finite_numbers_are_400(anon_api, literal):
    assert_refused(post_raw(anon_api, b'{"n": ' + literal + b"}"), 400, "invalid_json")


@pytest.mark.parametrize(
    "body",
    [b"{", b'{"note": }', b"{'note': 'single quotes'}", b"\xef\xbb\xbf{}", b"9" * 5000],
    ids=["truncated", "missing value", "single quotes", "BOM", "huge integer"],
)
def test_gen_02_malformed_json_is_400(anon_api, body):
    assert_refused(post_raw(anon_api, body), 400, "invalid_json")


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
def test_gen_02_bodies_other_than_json_are_415(anon_api, content_type):
    response = post_raw(anon_api, b"note=hello", content_type=content_type)
    assert_refused(response, 415, "unsupported_media_type")


def test_gen_02_refusals_do_not_echo_the_body(anon_api):
    response = post_raw(anon_api, b'{"note": "secret-value-123", "note": "x"}')
    assert response.status_code == 400
    assert b"secret-value-123" not in response.content
    assert json.loads(response.content)["detail"] == "The body is not valid JSON."
