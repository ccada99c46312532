"""TURN REST credentials minted per join (VID-08, the minting part; coturn's refusal after
expiry is its own, checked end to end elsewhere)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import api_client_for
from tests.scheduling.conftest import make_booking, make_therapist
from video import turn

pytestmark = pytest.mark.django_db

STUN = "stun:stun.example.test:3478"
TURNS = ["turn:turn.example.test:3478?transport=udp", "turns:turn.example.test:5349"]
SECRET = "another-turn-secret-for-tests"
EXPIRES = datetime(2026, 11, 3, 15, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _at(fixed_clock, settings):
    settings.VIDEO_STUN_URLS = [STUN]
    settings.VIDEO_TURN_URLS = TURNS
    settings.VIDEO_TURN_SECRET = SECRET
    return fixed_clock


def _expected_password(username: str) -> str:
    """coturn's check, written out independently of video/turn.py."""
    mac = hmac.new(SECRET.encode("utf-8"), username.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def test_vid_08_username_is_expiry_and_a_random_id_password_is_hmac_sha1():
    stun, relay = turn.ice_servers(expires_at=EXPIRES)
    assert stun == {"urls": [STUN]}
    assert relay["urls"] == TURNS
    expiry, opaque = relay["username"].split(":")
    assert int(expiry) == int(EXPIRES.timestamp()) == 1793719800
    assert re.fullmatch(r"[0-9a-f]{16}", opaque)
    assert relay["credential"] == _expected_password(relay["username"])


def test_vid_08_each_mint_has_a_fresh_username():
    first = turn.ice_servers(expires_at=EXPIRES)[1]["username"]
    second = turn.ice_servers(expires_at=EXPIRES)[1]["username"]
    assert first != second and first.split(":")[0] == second.split(":")[0]


def test_without_turn_urls_there_is_no_turn_entry(settings):
    settings.VIDEO_TURN_URLS = []
    assert turn.ice_servers(expires_at=EXPIRES) == [{"urls": [STUN]}]
    settings.VIDEO_STUN_URLS = []
    assert turn.ice_servers(expires_at=EXPIRES) == []


def test_the_provider_never_shows_its_secret():
    provider = turn.get_provider()
    assert SECRET not in repr(provider) and SECRET not in str(provider)


def test_vid_08_a_join_mints_credentials_expiring_with_the_window_naming_no_one(
    client_user, therapist, fixed_clock
):
    profile = make_therapist(user=therapist)
    booking = make_booking(
        therapist=profile,
        client=client_user,
        start=fixed_clock + timedelta(minutes=5),
        now=fixed_clock - timedelta(days=1),
    )
    response = api_client_for(client_user, mfa=False).post(
        f"/api/v1/video/rooms/{booking.pk}/join", {"jurisdiction": "US-NY"}, format="json"
    )
    assert response.status_code == 200, response.content
    text = response.content.decode()
    assert SECRET not in text
    [relay] = [s for s in response.json()["ice_servers"] if "username" in s]
    closes_at = booking.end + timedelta(minutes=15)
    assert relay["username"].split(":")[0] == str(int(closes_at.timestamp()))
    assert relay["credential"] == _expected_password(relay["username"])
    for personal in (str(client_user.pk), client_user.pk.hex, client_user.email):
        assert personal not in relay["username"]


def test_vid_08_no_turn_entry_in_a_join_when_turn_is_not_configured(
    settings, client_user, therapist, fixed_clock
):
    settings.VIDEO_TURN_URLS = []
    profile = make_therapist(user=therapist)
    booking = make_booking(
        therapist=profile,
        client=client_user,
        start=fixed_clock + timedelta(minutes=5),
        now=fixed_clock - timedelta(days=1),
    )
    response = api_client_for(therapist).post(
        f"/api/v1/video/rooms/{booking.pk}/join", {}, format="json"
    )
    assert response.json()["ice_servers"] == [{"urls": [STUN]}]
