"""Client profiles: the client and therapists they have sessions with (no one else), every
access audited by field group and never by value, PHI encrypted (ENC-01, ENC-02), and the
phone found by equality through a blind index only (ENC-05)."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest
import yaml
from django.conf import settings
from django.db import connection
from django.test import override_settings

from api import crypto
from api.models import Role
from audit.models import AuditEvent, Outcome
from scheduling.bookings import services as booking_services
from scheduling.clients.services import (
    PHONE_INDEX_PURPOSE,
    PHONE_TEXT,
    ProfileUnreadable,
    client_profile_keys_rotate,
)
from scheduling.models import ClientProfile
from tests.factories import api_client_for, make_user
from tests.scheduling.bookings.conftest import NOW, book, open_starts

pytestmark = pytest.mark.django_db

ME = "/api/v1/clients/me/profile"
PROFILE = {
    "date_of_birth": "1987-04-12",
    "phone": "+1 (212) 555-0100",
    "emergency_contact": {"name": "Robin Example", "phone": "+44 20 7946 0000"},
    "home_jurisdiction": "US-NY",
}
PHI = ("1987-04-12", "2125550100", "Robin", "7946")


def _url(user):
    return f"/api/v1/clients/{user.pk}/profile"


def _raw_profile() -> dict:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT date_of_birth_encrypted, phone_encrypted, phone_index, "
            "emergency_contact_encrypted, home_jurisdiction, key_id FROM scheduling_clientprofile"
        )
        names = [c[0] for c in cursor.description]
        return dict(zip(names, cursor.fetchone(), strict=True))


@pytest.fixture
def saved(client_api):
    response = client_api.put(ME, PROFILE, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def _treated_by(client, profile):
    booking = book(client, profile, open_starts(profile)[0])
    return booking_services.booking_confirm(booking_id=booking.pk, now=NOW)


def test_a_client_keeps_their_profile(saved, client_user, client_api):
    assert saved == {
        "client": str(client_user.pk),
        "full_name": client_user.full_name,
        "date_of_birth": "1987-04-12",
        "phone": "+12125550100",
        "emergency_contact": {
            "name": "Robin Example",
            "phone": "+442079460000",
            "relationship": "",
        },
        "home_jurisdiction": "US-NY",
        "updated_at": saved["updated_at"],
    }
    assert client_api.get(ME).json() == saved
    cleared = client_api.put(ME, {"home_jurisdiction": "GB"}, format="json").json()
    assert (cleared["phone"], cleared["emergency_contact"], cleared["date_of_birth"]) == (
        "",
        None,
        None,
    )


@pytest.mark.parametrize(
    "extra",
    [{"user": "x"}, {"role": "admin"}, {"phone_index": "0" * 64}, {"key_id": "k9"}],
)
def test_az_02_a_client_cannot_set_server_fields(client_api, extra):
    response = client_api.put(ME, {**PROFILE, **extra}, format="json")
    assert response.status_code == 400
    assert not ClientProfile.objects.exists()


@pytest.mark.parametrize("phone", ["2125550100", "+0 212", "+1 212 555 0100 ext 5", "call me"])
def test_phones_must_be_international_numbers(client_api, phone):
    response = client_api.put(ME, {**PROFILE, "phone": phone}, format="json")
    assert response.status_code == 400
    assert phone not in response.content.decode()


@pytest.mark.parametrize(
    ("phone", "valid"),
    [
        ("+1 (212) 555-0100", True),
        ("+44.20.7946.0000", True),
        ("  +1 212 555 0100", True),
        ("+1 212 555", True),  # seven digits: the shortest E.164 number
        ("+1 212 55", False),
        ("+1 212 555 0100 1234", True),  # fifteen digits: the longest
        ("+1 212 555 0100 12345", False),
        ("+1 ٢١٢ ٥٥٥ ٠١٠٠", False),  # digits of another script: \d took them
        ("+1" + " " * 29 + "2125550100", False),  # over 32 characters as typed
        ("0", False),
    ],
)
def test_api_04_the_schema_pattern_accepts_what_the_server_accepts(client_api, phone, valid):
    """API-04: the E.164 rule is in the schema (with the separators a person types), and the
    server takes exactly what it describes."""
    document = yaml.safe_load((settings.BASE_DIR / "openapi.yaml").read_text())
    schema = document["components"]["schemas"]["EmergencyContactInRequest"]["properties"]
    assert schema["phone"] == {
        "type": "string",
        "minLength": 1,
        "maxLength": 32,
        "pattern": PHONE_TEXT,
    }
    in_schema = bool(re.match(PHONE_TEXT, phone)) and 1 <= len(phone) <= 32
    assert in_schema is valid
    contact = {"name": "Robin Example", "phone": phone}
    response = client_api.put(ME, {**PROFILE, "emergency_contact": contact}, format="json")
    assert response.status_code == (200 if valid else 400), response.content


def test_visible_to_therapists_with_a_confirmed_session_and_nobody_else(
    saved, client_user, profile, therapist_api, outsider, compliance_api
):
    url = _url(client_user)
    assert therapist_api.get(url).status_code == 404  # no session yet
    held = book(client_user, profile, open_starts(profile)[0])
    assert therapist_api.get(url).status_code == 404  # a hold is not a relationship
    booking_services.booking_confirm(booking_id=held.pk, now=NOW)
    response = therapist_api.get(url)
    assert response.status_code == 200 and response.json()["phone"] == "+12125550100"

    other_therapist = api_client_for(make_user(role=Role.THERAPIST))
    missing = "00000000-0000-4000-8000-000000000000"
    theirs = other_therapist.get(url)
    nothing = other_therapist.get(f"/api/v1/clients/{missing}/profile")
    assert theirs.status_code == nothing.status_code == 404  # AZ-01: no existence oracle
    assert api_client_for(outsider, mfa=False).get(url).status_code == 404
    assert compliance_api.get(url).status_code == 403


def test_every_access_is_audited_by_field_group_not_value(
    saved, client_user, client_api, profile, therapist, therapist_api
):
    """AUD-01: each profile write and read is one row naming the client, by field group."""
    _treated_by(client_user, profile)
    client_api.get(ME)
    therapist_api.get(_url(client_user))
    api_client_for(make_user(role=Role.THERAPIST)).get(_url(client_user))
    events = AuditEvent.objects.filter(resource_type="scheduling.client_profile").order_by("id")
    assert [(e.action, e.outcome, e.patient_id) for e in events] == [
        ("create", Outcome.ALLOWED, client_user.pk),
        ("read", Outcome.ALLOWED, client_user.pk),
        ("read", Outcome.ALLOWED, client_user.pk),
        ("read", Outcome.DENIED, client_user.pk),
    ]
    assert [e.actor_id for e in events[:3]] == [client_user.pk, client_user.pk, therapist.pk]
    assert events[0].details["field_groups"] == [
        "date_of_birth",
        "emergency_contact",
        "home_jurisdiction",
        "phone",
    ]
    dumped = json.dumps([e.details for e in events])
    assert not [value for value in PHI if value in dumped]


def test_enc_01_the_raw_row_holds_ciphertext_with_a_key_id(saved):
    row = _raw_profile()
    for column in ("date_of_birth_encrypted", "phone_encrypted", "emergency_contact_encrypted"):
        assert row[column].startswith("v1:dev-1:")
    assert row["key_id"] == "dev-1"
    dumped = json.dumps(row)
    assert not [value for value in PHI if value in dumped]


def test_enc_05_the_phone_has_a_keyed_blind_index_and_no_plaintext_index(saved):
    row = _raw_profile()
    assert row["phone_index"] == crypto.keyed_hash("+12125550100", purpose=PHONE_INDEX_PURPOSE)
    assert row["phone_index"] != hashlib.sha256(b"+12125550100").hexdigest()  # keyed, not bare
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "scheduling_clientprofile")
    indexed = {c for spec in constraints.values() if spec["index"] for c in spec["columns"]}
    assert "phone_encrypted" not in indexed and "phone_index" in indexed


def test_enc_05_a_therapist_finds_their_own_client_by_phone(
    saved, client_user, profile, therapist_api
):
    """ENC-05; AUD-01: each search is audited, one row per client found, without the phone."""
    lookup = "/api/v1/therapists/me/clients/lookup"
    assert therapist_api.post(lookup, {"phone": "+12125550100"}).json() == []  # not theirs yet
    _treated_by(client_user, profile)
    found = therapist_api.post(lookup, {"phone": "+1 212-555-0100"}, format="json")
    assert found.status_code == 200
    assert [p["client"] for p in found.json()] == [str(client_user.pk)]
    assert therapist_api.post(lookup, {"phone": "+12125550199"}).json() == []
    other = api_client_for(make_user(role=Role.THERAPIST))
    assert other.post(lookup, {"phone": "+12125550100"}).json() == []
    searches = AuditEvent.objects.filter(action="search").order_by("id")
    assert [e.patient_id for e in searches if e.patient_id] == [client_user.pk]
    assert "2125550100" not in json.dumps([e.details for e in searches])


def test_enc_02_profiles_rotate_to_a_new_key(saved, client_api):
    new_key = base64.b64encode(b"n" * 32).decode()
    keys = {"dev-1": _raw_key(), "k2": new_key}
    with override_settings(FIELD_ENCRYPTION_KEYS=keys, FIELD_ENCRYPTION_KEY_ID="k2"):
        assert client_profile_keys_rotate().rotated == 1
        assert _raw_profile()["phone_encrypted"].startswith("v1:k2:")
    with override_settings(FIELD_ENCRYPTION_KEYS={"k2": new_key}, FIELD_ENCRYPTION_KEY_ID="k2"):
        assert client_api.get(ME).json() == saved


def test_enc_03_an_unreadable_profile_is_an_explicit_error(saved, client_api):
    """ENC-03: a profile under a missing key is an explicit 500 problem, never ciphertext;
    the rotation job refuses it and rewrites nothing."""
    before = _raw_profile()
    with override_settings(
        FIELD_ENCRYPTION_KEYS={"k2": base64.b64encode(b"n" * 32).decode()},
        FIELD_ENCRYPTION_KEY_ID="k2",
    ):
        response = client_api.get(ME)
        with pytest.raises(ProfileUnreadable):
            client_profile_keys_rotate()
    assert response.status_code == 500 and response.json()["code"] == "decryption_failed"
    assert "v1:" not in response.content.decode()
    assert _raw_profile() == before  # nothing "mangled" was saved


def test_enc_03_without_the_current_key_a_write_saves_nothing(saved, client_api):
    """ENC-03: a write whose current key is not configured fails as a whole: the stored row
    is the one from before, every field still under its old key."""
    before = _raw_profile()
    client_api.raise_request_exception = False
    with override_settings(FIELD_ENCRYPTION_KEY_ID="k9"):
        response = client_api.put(ME, {**PROFILE, "phone": "+12125550111"}, format="json")
    assert response.status_code == 500
    assert "2125550111" not in response.content.decode()
    assert _raw_profile() == before


def _raw_key() -> str:
    from django.conf import settings

    return settings.FIELD_ENCRYPTION_KEYS["dev-1"]
