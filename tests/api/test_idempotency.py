"""``Idempotency-Key`` on creating POSTs (api.idempotency.idempotent).

Same key + same request from the same actor → the stored response again, marked
``Idempotency-Replayed: true``; same key + different request → 422; a retry while the first is
still running → 409; a malformed key → 400. Refused requests are not stored.
"""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection
from django.urls import path
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

import api.urls
from api.idempotency import idempotent
from api.models import IdempotencyRecord, Role, User
from api.serializers import StrictInputSerializer
from tests.factories import api_client_for, make_user

URL = "/api/v1/_test/accounts"


class AccountInput(StrictInputSerializer):
    email = serializers.EmailField()


class Gate:
    """Lets a test hold a request inside the view (set ``hold`` to a pair of events)."""

    hold: tuple[threading.Event, threading.Event] | None = None


class AccountCreateView(APIView):
    permission_classes = (AllowAny,)

    @idempotent
    def post(self, request):
        data = AccountInput(data=request.data)
        data.is_valid(raise_exception=True)
        if Gate.hold is not None:
            entered, proceed = Gate.hold
            entered.set()
            assert proceed.wait(timeout=30)
        user = User.objects.create_user(data.validated_data["email"], None, role=Role.CLIENT)
        return Response({"id": str(user.pk), "email": user.email}, status=201)


urlpatterns = [path("api/v1/_test/accounts", AccountCreateView.as_view()), *api.urls.urlpatterns]
handler500 = api.urls.handler500

pytestmark = pytest.mark.urls(__name__)


def new_key() -> str:
    return str(uuid.uuid4())


def create(client, email: str, key: str | None):
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return client.post(URL, {"email": email}, format="json", **headers)


@pytest.mark.django_db
def test_same_key_and_body_replays_the_first_response(anon_api):
    key = new_key()
    first = create(anon_api, "a@example.test", key)
    again = create(anon_api, "a@example.test", key)

    assert first.status_code == 201
    assert "Idempotency-Replayed" not in first
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotency-Replayed"] == "true"
    assert User.objects.filter(email="a@example.test").count() == 1


@pytest.mark.django_db
def test_key_order_in_the_body_does_not_make_a_different_request(anon_api):
    key = new_key()
    first = anon_api.post(
        URL,
        b'{"email": "b@example.test"}',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=key,
    )
    again = anon_api.post(
        URL,
        b'{ "email" : "b@example.test" }',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=key,
    )
    assert again.status_code == 201
    assert again.json() == first.json()


@pytest.mark.django_db
def test_same_key_with_a_different_body_is_422_and_creates_nothing(anon_api):
    key = new_key()
    create(anon_api, "c@example.test", key)
    users = User.objects.count()

    response = create(anon_api, "someone-else@example.test", key)

    assert response.status_code == 422
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "idempotency_key_reused"
    assert User.objects.count() == users


@pytest.mark.django_db
def test_without_a_key_every_post_runs(anon_api):
    create(anon_api, "d1@example.test", None)
    create(anon_api, "d2@example.test", None)
    assert User.objects.filter(email__in=["d1@example.test", "d2@example.test"]).count() == 2
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.parametrize(
    "key",
    ["", "has space", "x" * 256, "tab\there", "ключ", "line\nbreak"],
    ids=["empty", "space", "too long", "tab", "non-ascii", "newline"],
)
@pytest.mark.django_db
def test_a_malformed_key_is_400_and_creates_nothing(anon_api, key):
    response = create(anon_api, "e@example.test", key)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_idempotency_key"
    assert not User.objects.filter(email="e@example.test").exists()
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db
def test_the_longest_allowed_key_works(anon_api):
    assert create(anon_api, "f@example.test", "k" * 255).status_code == 201


@pytest.mark.django_db
def test_different_users_with_the_same_key_do_not_collide():
    key = "the-same-key"
    alice = api_client_for(make_user(role=Role.CLIENT), mfa=False)
    bob = api_client_for(make_user(role=Role.CLIENT), mfa=False)

    first = create(alice, "from-alice@example.test", key)
    second = create(bob, "from-bob@example.test", key)

    assert first.status_code == 201
    assert second.status_code == 201
    assert "Idempotency-Replayed" not in second
    assert second.json()["email"] == "from-bob@example.test"
    assert IdempotencyRecord.objects.filter(key=key).count() == 2


@pytest.mark.django_db
def test_a_refused_request_is_not_stored_so_a_corrected_retry_runs(anon_api):
    key = new_key()
    refused = anon_api.post(URL, {"email": "nope"}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert refused.status_code == 400
    assert not IdempotencyRecord.objects.filter(key=key).exists()

    corrected = create(anon_api, "g@example.test", key)
    assert corrected.status_code == 201
    assert "Idempotency-Replayed" not in corrected


@pytest.mark.django_db
def test_the_stored_response_is_encrypted(anon_api):
    key = new_key()
    create(anon_api, "stored@example.test", key)
    record = IdempotencyRecord.objects.get(key=key)
    assert record.status_code == 201
    assert record.response_body.startswith("v1:")
    assert "stored@example.test" not in record.response_body


@pytest.mark.django_db(transaction=True)
def test_a_retry_while_the_first_is_in_flight_is_409_then_replays(anon_api):
    key = new_key()
    entered, proceed = threading.Event(), threading.Event()
    results = {}

    def first_attempt() -> None:
        try:
            results["first"] = create(api_client_for(), "inflight@example.test", key)
        finally:
            connection.close()

    Gate.hold = (entered, proceed)
    worker = threading.Thread(target=first_attempt)
    worker.start()
    try:
        assert entered.wait(timeout=30)
        Gate.hold = None
        concurrent = create(anon_api, "inflight@example.test", key)
    finally:
        Gate.hold = None
        proceed.set()
        worker.join(timeout=30)

    assert concurrent.status_code == 409
    assert concurrent.json()["code"] == "idempotency_in_progress"
    assert results["first"].status_code == 201
    assert User.objects.filter(email="inflight@example.test").count() == 1

    after = create(anon_api, "inflight@example.test", key)
    assert after.status_code == 201
    assert after["Idempotency-Replayed"] == "true"
    assert after.json() == results["first"].json()
