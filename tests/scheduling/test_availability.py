"""Therapist self-management (profile, settings, session types, rules, overrides, licences)
and the public slots endpoint, with object-level permissions (AZ-01, AZ-02)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from api.models import Role
from audit.models import AuditEvent
from scheduling import selectors
from scheduling.models import (
    AvailabilityOverride,
    AvailabilityRule,
    BookingStatus,
    Licence,
    SessionType,
    TherapistProfile,
)
from tests.factories import api_client_for, make_user
from tests.scheduling.conftest import NOW, make_booking, make_therapist

pytestmark = pytest.mark.django_db

ME = "/api/v1/therapists/me"


# --- Profile and settings ---------------------------------------------------------------------


def test_a_therapist_creates_their_profile_once(therapist, therapist_api):
    body = {
        "display_name": "Dr Ada Example",
        "time_zone": "Europe/Berlin",
        "specialties": ["anxiety", "grief"],
        "modalities": ["cbt"],
        "languages": ["en", "de"],
    }
    created = therapist_api.post(f"{ME}/profile", body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["specialties"] == ["anxiety", "grief"]
    again = therapist_api.post(f"{ME}/profile", body, format="json")
    assert again.status_code == 409 and again.json()["code"] == "profile_exists"
    assert TherapistProfile.objects.filter(user=therapist).count() == 1


def test_profile_refuses_an_unknown_time_zone_and_changes_nothing(therapist, therapist_api):
    response = therapist_api.post(
        f"{ME}/profile", {"display_name": "X", "time_zone": "Mars/Olympus"}, format="json"
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert not TherapistProfile.objects.filter(user=therapist).exists()


def test_clients_and_staff_without_mfa_cannot_manage_a_therapist_profile(client_api, therapist):
    assert client_api.get(f"{ME}/profile").status_code == 403
    no_mfa = api_client_for(therapist, mfa=False)
    assert no_mfa.get(f"{ME}/profile").status_code == 403


def test_settings_are_validated_and_a_refusal_changes_nothing(profile, therapist_api):
    ok = therapist_api.patch(
        f"{ME}/settings",
        {"buffer_after_minutes": 10, "max_sessions_per_day": 4, "horizon_days": 30},
        format="json",
    )
    assert ok.status_code == 200 and ok.json()["buffer_after_minutes"] == 10
    bad = therapist_api.patch(
        f"{ME}/settings", {"buffer_before_minutes": 5, "horizon_days": 999}, format="json"
    )
    assert bad.status_code == 400
    profile.refresh_from_db()
    assert (profile.buffer_before_minutes, profile.horizon_days) == (0, 30)


def test_az_02_profile_update_cannot_touch_summary_or_owner_fields(profile, therapist_api):
    response = therapist_api.patch(
        f"{ME}/profile",
        {"display_name": "New", "next_open_slot": None, "user": str(profile.user_id)},
        format="json",
    )
    assert response.status_code == 400
    assert {e["field"] for e in response.json()["errors"]} == {"next_open_slot", "user"}
    profile.refresh_from_db()
    assert profile.display_name != "New"


# --- Session types -----------------------------------------------------------------------------


def test_session_types_crud_and_archive(profile, therapist_api):
    created = therapist_api.post(
        f"{ME}/session-types",
        {
            "name": "Couples",
            "duration_minutes": 80,
            "price_minor": 18000,
            "currency": "USD",
            "delivery": "in_person",
            "cpt_code": "90847",
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    assert (
        therapist_api.patch(
            f"{ME}/session-types/{pk}", {"price_minor": 19000}, format="json"
        ).json()["price_minor"]
        == 19000
    )
    assert therapist_api.delete(f"{ME}/session-types/{pk}").status_code == 204
    assert SessionType.objects.get(pk=pk).is_active is False


@pytest.mark.parametrize(
    "body",
    [
        {"price_minor": -1},
        {"price_minor": 10.5},
        {"duration_minutes": 0},
        {"currency": "usd"},
        {"delivery": "phone"},
    ],
)
def test_invalid_session_types_are_refused(profile, therapist_api, body):
    base = {
        "name": "S",
        "duration_minutes": 50,
        "price_minor": 100,
        "currency": "USD",
        "delivery": "video",
    }
    response = therapist_api.post(f"{ME}/session-types", {**base, **body}, format="json")
    assert response.status_code == 400
    assert not SessionType.objects.filter(name="S").exists()


def test_az_01_another_therapists_session_type_is_not_found(profile, other_profile, therapist_api):
    theirs = SessionType.objects.get(therapist=other_profile)
    url = f"{ME}/session-types/{theirs.pk}"
    assert therapist_api.get(url).status_code == 404
    assert therapist_api.patch(url, {"price_minor": 1}, format="json").status_code == 404
    assert therapist_api.delete(url).status_code == 404
    theirs.refresh_from_db()
    assert theirs.price_minor == 12000 and theirs.is_active


def test_az_02_a_therapist_cannot_move_a_session_type_to_another_therapist(
    profile, other_profile, therapist_api
):
    mine = SessionType.objects.get(therapist=profile)
    response = therapist_api.patch(
        f"{ME}/session-types/{mine.pk}", {"therapist": str(other_profile.pk)}, format="json"
    )
    assert response.status_code == 400
    mine.refresh_from_db()
    assert mine.therapist_id == profile.pk


# --- Rules and overrides -----------------------------------------------------------------------


def test_weekly_rules_are_replaced_as_a_whole(profile, therapist_api):
    response = therapist_api.put(
        f"{ME}/availability/rules",
        {
            "windows": [
                {"weekday": 0, "start": "08:00", "end": "12:00"},
                {"weekday": 6, "start": "20:00", "end": "24:00"},
            ]
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json() == [
        {"weekday": 0, "start": "08:00", "end": "12:00"},
        {"weekday": 6, "start": "20:00", "end": "24:00"},
    ]
    assert AvailabilityRule.objects.filter(therapist=profile).count() == 2


@pytest.mark.parametrize(
    "window",
    [
        {"weekday": 7, "start": "09:00", "end": "10:00"},
        {"weekday": 0, "start": "10:00", "end": "09:00"},
        {"weekday": 0, "start": "25:00", "end": "26:00"},
        {"weekday": 0, "start": "9:00", "end": "10:00"},
        {"weekday": 0, "start": "09:00", "end": "10:00", "zone": "UTC"},
    ],
)
def test_invalid_rules_are_refused_and_the_old_rules_stay(profile, therapist_api, window):
    before = list(
        AvailabilityRule.objects.filter(therapist=profile).values_list("weekday", "start_minute")
    )
    response = therapist_api.put(f"{ME}/availability/rules", {"windows": [window]}, format="json")
    assert response.status_code == 400
    after = list(
        AvailabilityRule.objects.filter(therapist=profile).values_list("weekday", "start_minute")
    )
    assert after == before


def test_overrides_extra_hours_and_time_off(profile, therapist_api):
    extra = therapist_api.post(
        f"{ME}/availability/overrides",
        {"kind": "extra", "first_date": "2030-06-01", "start": "10:00", "end": "12:00"},
        format="json",
    )
    assert extra.status_code == 201, extra.content
    off = therapist_api.post(
        f"{ME}/availability/overrides",
        {"kind": "time_off", "first_date": "2030-07-01", "last_date": "2030-07-14"},
        format="json",
    )
    assert off.status_code == 201
    bad = therapist_api.post(
        f"{ME}/availability/overrides",
        {"kind": "time_off", "first_date": "2030-07-14", "last_date": "2030-07-01"},
        format="json",
    )
    assert bad.status_code == 400
    assert AvailabilityOverride.objects.filter(therapist=profile).count() == 2
    assert (
        therapist_api.delete(f"{ME}/availability/overrides/{off.json()['id']}").status_code == 204
    )
    assert AvailabilityOverride.objects.filter(therapist=profile).count() == 1


def test_az_01_another_therapists_override_cannot_be_deleted(profile, other_profile, therapist_api):
    theirs = AvailabilityOverride.objects.create(
        therapist=other_profile,
        kind="time_off",
        first_date=date(2030, 1, 1),
        last_date=date(2030, 1, 2),
    )
    assert therapist_api.delete(f"{ME}/availability/overrides/{theirs.pk}").status_code == 404
    assert AvailabilityOverride.objects.filter(pk=theirs.pk).exists()


# --- Licences ----------------------------------------------------------------------------------


def test_az_02_a_therapist_cannot_set_a_licence_verified(profile, therapist_api):
    response = therapist_api.post(
        f"{ME}/licences",
        {"jurisdiction": "US-CA", "number": "PSY-1", "expires_on": "2031-01-01", "verified": True},
        format="json",
    )
    assert response.status_code == 400
    assert not Licence.objects.filter(jurisdiction="US-CA").exists()
    created = therapist_api.post(
        f"{ME}/licences",
        {"jurisdiction": "US-CA", "number": "PSY-1", "expires_on": "2031-01-01"},
        format="json",
    )
    assert created.status_code == 201 and created.json()["verified"] is False
    sneaky = therapist_api.patch(
        f"{ME}/licences/{created.json()['id']}",
        {"verified_at": "2025-01-01T00:00:00Z"},
        format="json",
    )
    assert sneaky.status_code == 400
    assert Licence.objects.get(pk=created.json()["id"]).verified_at is None


def test_admin_verifies_a_licence_recorded_and_audited(profile, admin_user, therapist_api):
    licence = Licence.objects.create(
        therapist=profile,
        jurisdiction="US-NJ",
        number="N-1",
        expires_on=date(2031, 1, 1),
        created_at=NOW,
    )
    assert therapist_api.post(f"/api/v1/admin/licences/{licence.pk}/verify").status_code == 403
    admin_api = api_client_for(admin_user)
    response = admin_api.post(f"/api/v1/admin/licences/{licence.pk}/verify")
    assert response.status_code == 200, response.content
    licence.refresh_from_db()
    assert licence.verified_by_id == admin_user.pk and licence.verified_at is not None
    event = AuditEvent.objects.get(
        action="scheduling.licence.verified", resource_id=str(licence.pk)
    )
    assert event.actor_id == admin_user.pk and event.details == {"jurisdiction": "US-NJ"}


def test_changing_a_licence_clears_its_verification(profile, therapist_api):
    licence = Licence.objects.get(therapist=profile)
    assert licence.verified_at is not None
    response = therapist_api.patch(
        f"{ME}/licences/{licence.pk}", {"number": "NEW-2"}, format="json"
    )
    assert response.status_code == 200 and response.json()["verified"] is False


def test_expired_licence_cannot_be_verified(profile, admin_user):
    licence = Licence.objects.create(
        therapist=profile,
        jurisdiction="US-NJ",
        number="N-1",
        expires_on=date(2020, 1, 1),
        created_at=NOW,
    )
    response = api_client_for(admin_user).post(f"/api/v1/admin/licences/{licence.pk}/verify")
    assert response.status_code == 409
    licence.refresh_from_db()
    assert licence.verified_at is None


def test_licensed_in_requires_a_verified_unexpired_licence(profile):
    today = NOW.date()
    assert selectors.therapist_is_licensed_in(therapist=profile, jurisdiction="US-NY", today=today)
    assert not selectors.therapist_is_licensed_in(
        therapist=profile, jurisdiction="US-CA", today=today
    )
    assert not selectors.therapist_is_licensed_in(
        therapist=profile, jurisdiction="US-NY", today=date(2030, 1, 2)
    )


# --- Bookings and holds as busy time (the hook issue 5 builds on) -------------------------------


def test_bookings_and_unexpired_holds_block_expired_holds_and_cancellations_do_not(profile):
    client = make_user(role=Role.CLIENT, password=None)
    session_type = SessionType.objects.get(therapist=profile)
    ny = ZoneInfo("America/New_York")
    tuesday_10 = datetime(2025, 6, 10, 10, tzinfo=ny).astimezone(UTC)

    def is_open(start):
        return selectors.slot_is_open(
            therapist=profile, session_type=session_type, start=start, now=NOW
        )

    assert is_open(tuesday_10)
    hold = make_booking(
        therapist=profile,
        client=client,
        start=tuesday_10,
        status=BookingStatus.HELD,
        hold_expires_at=NOW + timedelta(minutes=10),
    )
    assert not is_open(tuesday_10)
    assert selectors.slot_is_open(
        therapist=profile,
        session_type=session_type,
        start=tuesday_10,
        now=NOW + timedelta(minutes=11),
    )
    assert selectors.slot_is_open(
        therapist=profile,
        session_type=session_type,
        start=tuesday_10,
        now=NOW,
        exclude_booking_ids=[hold.pk],
    )
    hold.status = BookingStatus.CANCELLED
    hold.save(update_fields=["status"])
    assert is_open(tuesday_10)
    make_booking(therapist=profile, client=client, start=tuesday_10 + timedelta(minutes=30))
    assert not is_open(tuesday_10)  # 10:00-10:50 overlaps 10:30-11:20


def test_slot_is_open_is_the_slot_list(profile):
    session_type = SessionType.objects.get(therapist=profile)
    start, end = NOW + timedelta(days=1), NOW + timedelta(days=3)
    listed = selectors.therapist_open_slots(
        therapist=profile, session_type=session_type, start=start, end=end, now=NOW
    )
    assert listed
    probe = start
    while probe < end:
        assert selectors.slot_is_open(
            therapist=profile, session_type=session_type, start=probe, now=NOW
        ) == (probe in listed)
        probe += timedelta(minutes=15)


# --- The public slots endpoint -----------------------------------------------------------------


def _slots_url(profile, **params):
    session_type = SessionType.objects.get(therapist=profile)
    query = {"session_type": str(session_type.pk), **params}
    return f"/api/v1/therapists/{profile.pk}/slots", query


def test_slots_are_listed_in_the_requesters_zone_only_the_offsets_change(profile, anon_api):
    now = timezone.now()
    start = (now + timedelta(days=3)).replace(microsecond=0)
    end = start + timedelta(days=7)
    results = {}
    for tz in ("UTC", "Asia/Kolkata", "America/Los_Angeles"):
        zone = ZoneInfo(tz)
        url, query = _slots_url(
            profile,
            start=start.astimezone(zone).isoformat(),
            end=end.astimezone(zone).isoformat(),
            tz=tz,
        )
        response = anon_api.get(url, query)
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["time_zone"] == tz and body["slots"]
        for slot in body["slots"]:
            parsed = datetime.fromisoformat(slot["start"])
            assert parsed.utcoffset() == parsed.astimezone(zone).utcoffset()
        results[tz] = [datetime.fromisoformat(s["start"]) for s in body["slots"]]
    assert results["UTC"] == results["Asia/Kolkata"] == results["America/Los_Angeles"]
    ny = ZoneInfo("America/New_York")
    assert all(9 <= s.astimezone(ny).hour < 17 for s in results["UTC"])


def test_an_unencoded_plus_in_the_offset_is_understood(profile, anon_api):
    start = (
        (timezone.now() + timedelta(days=3))
        .astimezone(ZoneInfo("Asia/Kolkata"))
        .replace(microsecond=0)
    )
    url, query = _slots_url(
        profile,
        start=start.isoformat().replace("+", " "),
        end=(start + timedelta(days=2)).isoformat(),
    )
    assert anon_api.get(url, query).status_code == 200


@pytest.mark.parametrize(
    "params",
    [
        {"tz": "Not/AZone"},
        {"tz": "../../etc/passwd"},
        {"start": "2030-01-01T09:00:00"},  # no offset
        {"start": "yesterday"},
        {"end": "2030-01-01T00:00:00+00:00", "start": "2030-01-02T00:00:00+00:00"},
        {"start": "2030-01-01T00:00:00+00:00", "end": "2030-06-01T00:00:00+00:00"},  # too long
        {"session_type": "not-a-uuid"},
        {"extra": "1"},
    ],
)
def test_invalid_slot_queries_are_400_problems(profile, anon_api, params):
    url, query = _slots_url(
        profile, start="2030-01-01T00:00:00+00:00", end="2030-01-08T00:00:00+00:00"
    )
    response = anon_api.get(url, {**query, **params})
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"


def test_slots_of_an_unlisted_therapist_or_foreign_session_type_are_404(
    profile, other_profile, anon_api
):
    unlisted = make_therapist(verified=False)
    url, query = _slots_url(unlisted, start="2030-01-01T00:00:00Z", end="2030-01-02T00:00:00Z")
    assert anon_api.get(url, query).status_code == 404
    url, _ = _slots_url(profile)
    theirs = SessionType.objects.get(therapist=other_profile)
    response = anon_api.get(
        url,
        {
            "session_type": str(theirs.pk),
            "start": "2030-01-01T00:00:00Z",
            "end": "2030-01-02T00:00:00Z",
        },
    )
    assert response.status_code == 404


def test_api_04_a_licence_number_that_is_not_text_is_400_and_unchanged(profile, therapist_api):
    """API-04 (found by schemathesis): ``{"number": 12345}`` was saved as "12345"."""
    licence = Licence.objects.get(therapist=profile)
    response = therapist_api.patch(f"{ME}/licences/{licence.pk}", {"number": 12345}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "number", "code": "invalid", "message": "Not a valid string."}
    ]
    assert Licence.objects.get(pk=licence.pk).number == licence.number


def test_a_licence_changed_into_a_duplicate_is_409_and_unchanged(profile, therapist_api):
    """Found by the schemathesis run: this was a 500 (unique constraint)."""
    body = {"jurisdiction": "US-CA", "number": "A-1", "expires_on": "2031-01-01"}
    first = therapist_api.post(f"{ME}/licences", body, format="json").json()
    second = therapist_api.post(f"{ME}/licences", {**body, "number": "A-2"}, format="json").json()
    assert therapist_api.post(f"{ME}/licences", body, format="json").status_code == 409
    response = therapist_api.patch(
        f"{ME}/licences/{second['id']}", {"number": "A-1"}, format="json"
    )
    assert response.status_code == 409 and response.json()["code"] == "licence_exists"
    assert Licence.objects.get(pk=second["id"]).number == "A-2"
    assert Licence.objects.get(pk=first["id"]).number == "A-1"


def test_session_type_names_are_unique_among_active_ones(profile, therapist_api):
    base = {"duration_minutes": 50, "price_minor": 100, "currency": "USD", "delivery": "video"}
    other = therapist_api.post(f"{ME}/session-types", {**base, "name": "Other"}, format="json")
    duplicate = therapist_api.post(
        f"{ME}/session-types", {**base, "name": "Individual session"}, format="json"
    )
    assert duplicate.status_code == 409
    rename = therapist_api.patch(
        f"{ME}/session-types/{other.json()['id']}", {"name": "Individual session"}, format="json"
    )
    assert rename.status_code == 409
    assert SessionType.objects.get(pk=other.json()["id"]).name == "Other"
