"""The pre-call endpoints' answers that need no media worker (docs/video.md, "Pre-call test"):
starting a test, and every offer refused before a worker is asked (bad token, bad SDP, an offer
without a data channel or media). Each refusal is problem+json and, past the input's shape,
audited as ``video.precall.refused``. The worker's answers (an echo, busy, a spent token, one
test per user) are in test_calls.py, with real peers.

VID-05: the offer's SDP is checked as every relayed SDP is (and must bring a data channel and
media). VID-02/VID-03 for the pre-call token: only a live one of its own type opens a test (not
an access or a room token, not an expired one), and it travels in the body, never the URL.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from api.models import Role
from audit.models import AuditEvent, Outcome
from tests.factories import api_client_for, make_user
from video.precall.tokens import precall_token_decode, precall_token_mint
from video.tokens import room_token_mint

START = "/api/v1/video/precall"
OFFER = "/api/v1/video/precall/offer"
CHROME = (Path(__file__).parents[1] / "fixtures" / "chrome_offer.sdp").read_bytes().decode()
STUN = "stun:stun.example.test:3478"
TURN = "turn:turn.example.test:3478?transport=udp"


@pytest.fixture(autouse=True)
def _ice(settings) -> None:
    settings.VIDEO_STUN_URLS = [STUN]
    settings.VIDEO_TURN_URLS = [TURN]
    settings.VIDEO_TURN_SECRET = "turn-secret-for-tests-only"


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


@pytest.mark.django_db
def test_a_signed_in_user_starts_a_test_and_gets_its_token_ice_servers_and_limits(
    client_user,
) -> None:
    before = timezone.now()
    response = api_client_for(client_user).post(START, {"seconds": 8}, format="json")
    after = timezone.now()

    assert response.status_code == 200, response.json()
    body = response.json()
    assert set(body) == {
        "test",
        "token",
        "expires_at",
        "seconds",
        "offer_url",
        "ice_servers",
        "limits",
    }
    assert body["seconds"] == 8
    assert body["offer_url"] == "http://testserver/api/v1/video/precall/offer"
    assert body["limits"] == {"width": 320, "height": 240, "fps": 15, "max_seconds": 30}
    assert body["ice_servers"][0] == {"urls": [STUN]}
    assert body["ice_servers"][1]["urls"] == [TURN]
    assert re.fullmatch(r"\d+:[0-9a-f]{16}", body["ice_servers"][1]["username"])
    claims = precall_token_decode(body["token"], now=timezone.now())
    assert (claims.user_id, str(claims.test_id), claims.seconds) == (
        client_user.pk,
        body["test"],
        8,
    )
    expires_at = datetime.fromisoformat(body["expires_at"])
    assert claims.expires_at == int(expires_at.timestamp())
    assert before + timedelta(seconds=120) <= expires_at <= after + timedelta(seconds=120)
    [event] = _events("video.precall.started")
    assert (event.actor_id, event.resource_type, event.resource_id) == (
        client_user.pk,
        "video.precall",
        body["test"],
    )
    assert event.details == {"seconds": 8}


@pytest.mark.django_db
def test_the_default_length_applies_and_a_therapist_with_mfa_may_test_too(therapist) -> None:
    response = api_client_for(therapist).post(START, {}, format="json")
    assert response.status_code == 200
    assert response.json()["seconds"] == 15


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"seconds": 31}, "seconds", "max_value"),  # over the cap
        ({"seconds": 4}, "seconds", "min_value"),
        ({"seconds": "ten"}, "seconds", "invalid"),
        ({"booking": str(uuid.uuid4())}, "booking", "unknown_field"),
    ],
)
def test_a_start_over_the_cap_or_malformed_is_a_400_and_starts_nothing(
    client_user, body, field, code
) -> None:
    response = api_client_for(client_user).post(START, body, format="json")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert [(e["field"], e["code"]) for e in problem["errors"]] == [(field, code)]
    assert _events("video.precall.started") == []


@pytest.mark.django_db
def test_a_start_needs_a_signed_in_user_and_a_second_factor_for_staff(therapist) -> None:
    assert api_client_for(None).post(START, {}, format="json").status_code == 401
    refused = api_client_for(therapist, mfa=False).post(START, {}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (403, "mfa_required")
    assert _events("video.precall.started") == []


def _offer(token: str, sdp: str = CHROME, **extra):
    return api_client_for(None).post(OFFER, {"token": token, "sdp": sdp, **extra}, format="json")


def _token(user, *, now=None) -> str:
    return precall_token_mint(
        user_id=user.pk,
        role=str(user.role),
        test_id=uuid.uuid4(),
        seconds=10,
        now=now or timezone.now(),
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["garbage", "expired", "room_token", "access_token"])
def test_an_offer_with_anything_but_a_live_precall_token_is_a_401_and_audited(kind) -> None:
    user = make_user(role=Role.CLIENT)
    now = timezone.now()
    token = {
        "garbage": "not-a-token",
        "expired": _token(user, now=now - timedelta(minutes=3)),
        "room_token": room_token_mint(
            user_id=user.pk,
            room_id=uuid.uuid4(),
            participant_id=uuid.uuid4(),
            role="client",
            jti=uuid.uuid4(),
            now=now,
            not_after=now + timedelta(minutes=5),
        ),
        "access_token": api_client_for(user)._credentials["HTTP_AUTHORIZATION"].split()[1],
    }[kind]

    seen = AuditEvent.objects.count()  # the trail refuses DELETE: earlier tests' events stay
    response = _offer(token)

    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "invalid_precall_token"
    [event] = AuditEvent.objects.order_by("id")[seen:]
    assert (event.outcome, event.actor_id, event.details) == (
        Outcome.DENIED,
        None,
        {"reason": "invalid_precall_token"},
    )
    assert event.action == "video.precall.refused"


def _strip_data_channel(sdp: str) -> str:
    head, *sections = re.split(r"(?=\r\nm=)", sdp)
    kept = [s for s in sections if not s.startswith("\r\nm=application")]
    bundle = re.sub(r"(a=group:BUNDLE [^\r]*?) 2", r"\1", head)
    return bundle + "".join(kept)


def _only_data_channel(sdp: str) -> str:
    head, *sections = re.split(r"(?=\r\nm=)", sdp)
    return head + "".join(s for s in sections if s.startswith("\r\nm=application"))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("sdp", "code"),
    [
        (CHROME.replace("UDP/TLS/RTP/SAVPF", "RTP/AVP"), "insecure_sdp"),
        (re.sub(r"a=fingerprint:sha-256", "a=fingerprint:sha-1", CHROME), "insecure_sdp"),
        ("v=0\r\nthis is not an SDP\r\n", "bad_sdp"),
        (CHROME + "a=x-padding:" + "A" * 40_000 + "\r\n", "sdp_too_large"),
        (_strip_data_channel(CHROME), "no_data_channel"),
        (_only_data_channel(CHROME), "no_media"),
    ],
)
def test_a_bad_insecure_or_incomplete_offer_is_a_400_and_reaches_no_worker(
    client_user, sdp, code
) -> None:
    response = _offer(_token(client_user), sdp)

    assert response.status_code == 400, response.json()
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert [(e["field"], e["code"]) for e in problem["errors"]] == [("sdp", code)]
    assert "a=" not in problem["detail"] + str(problem["errors"])  # the SDP is never quoted
    assert _events("video.precall.answered") == []


@pytest.mark.django_db
def test_an_offer_with_a_missing_or_extra_field_is_a_400(client_user) -> None:
    token = _token(client_user)
    missing = api_client_for(None).post(OFFER, {"token": token}, format="json")
    extra = _offer(token, room=str(uuid.uuid4()))
    assert [(e["field"], e["code"]) for e in missing.json()["errors"]] == [("sdp", "required")]
    assert [(e["field"], e["code"]) for e in extra.json()["errors"]] == [("room", "unknown_field")]
    assert missing.status_code == extra.status_code == 400


@pytest.mark.django_db
def test_a_get_on_the_offer_is_a_405_problem() -> None:
    response = api_client_for(None).get(OFFER)
    assert response.status_code == 405
    assert response["Content-Type"] == "application/problem+json"
