"""Calendar feeds out: secret revocable feed URLs for therapists and clients, per-booking .ics,
parsed with icalendar and with vobject (an independent parser), audited, and round-tripped."""

from __future__ import annotations

import logging
from datetime import timedelta

import icalendar
import pytest
import vobject
from django.utils import timezone

from api.models import Role
from audit.models import AuditEvent
from scheduling import selectors, services
from scheduling.models import BookingStatus, CalendarFeedToken, ExternalBusyInterval, SessionType
from tests.factories import api_client_for, make_user
from tests.scheduling.conftest import make_booking

pytestmark = pytest.mark.django_db

TOKENS = "/api/v1/calendars/tokens"


def _path(url: str) -> str:
    return url[url.index("/api/v1/") :]


@pytest.fixture
def sessions(profile):
    """Three sessions of the ``therapist`` persona next week: with Jane Doe (confirmed), with
    John Roe (cancelled, sequence 2), and a hold (never shown)."""
    now = timezone.now()
    base = (now + timedelta(days=7)).replace(minute=0, second=0, microsecond=0)
    jane = make_user(role=Role.CLIENT, full_name="Jane Doe", password=None)
    john = make_user(role=Role.CLIENT, full_name="John Roe", password=None)
    return {
        "jane": jane,
        "john": john,
        "confirmed": make_booking(therapist=profile, client=jane, start=base, now=now),
        "cancelled": make_booking(
            therapist=profile,
            client=john,
            start=base + timedelta(hours=2),
            status=BookingStatus.CANCELLED,
            sequence=2,
            now=now,
        ),
        "held": make_booking(
            therapist=profile,
            client=jane,
            start=base + timedelta(hours=4),
            status=BookingStatus.HELD,
            hold_expires_at=now + timedelta(minutes=10),
            now=now,
        ),
    }


def _feed_url(api) -> str:
    response = api.post(TOKENS)
    assert response.status_code == 201, response.content
    return _path(response.json()["url"])


def test_therapist_feed_parses_with_icalendar_and_vobject(sessions, therapist_api, anon_api):
    url = _feed_url(therapist_api)
    response = anon_api.get(url)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/calendar; charset=utf-8"
    body = response.content

    calendar = icalendar.Calendar.from_ical(body)
    events = {str(e["UID"]): e for e in calendar.walk("VEVENT")}
    confirmed, cancelled = sessions["confirmed"], sessions["cancelled"]
    assert set(events) == {
        f"{confirmed.pk}@telehealth.invalid",
        f"{cancelled.pk}@telehealth.invalid",
    }
    first = events[f"{confirmed.pk}@telehealth.invalid"]
    assert first["DTSTART"].dt == confirmed.start and first["DTEND"].dt == confirmed.end
    assert str(first["SUMMARY"]) == "Session – J.D."
    assert str(first["STATUS"]) == "CONFIRMED" and int(first["SEQUENCE"]) == 0
    second = events[f"{cancelled.pk}@telehealth.invalid"]
    assert str(second["STATUS"]) == "CANCELLED" and int(second["SEQUENCE"]) == 2
    assert b"Jane" not in body and b"Doe" not in body and b"@example.test" not in body

    parsed = vobject.readOne(body.decode("utf-8"))
    by_uid = {e.uid.value: e for e in parsed.vevent_list}
    assert set(by_uid) == set(events)
    vfirst = by_uid[f"{confirmed.pk}@telehealth.invalid"]
    assert vfirst.dtstart.value == confirmed.start and vfirst.dtend.value == confirmed.end
    assert vfirst.status.value == "CONFIRMED" and vfirst.summary.value == "Session – J.D."


def test_uids_are_stable_and_sequence_follows_changes(sessions, therapist_api, anon_api):
    url = _feed_url(therapist_api)
    before = icalendar.Calendar.from_ical(anon_api.get(url).content)
    booking = sessions["confirmed"]
    for field in ("start", "end", "blocked_start", "blocked_end"):
        setattr(booking, field, getattr(booking, field) + timedelta(hours=1))
    booking.sequence += 1  # what issue 5's reschedule does
    booking.save()
    after = icalendar.Calendar.from_ical(anon_api.get(url).content)
    uid = f"{booking.pk}@telehealth.invalid"
    old = next(e for e in before.walk("VEVENT") if str(e["UID"]) == uid)
    new = next(e for e in after.walk("VEVENT") if str(e["UID"]) == uid)
    assert int(new["SEQUENCE"]) == int(old["SEQUENCE"]) + 1
    assert new["DTSTART"].dt == old["DTSTART"].dt + timedelta(hours=1)


def test_the_therapist_may_hide_client_initials(sessions, profile, therapist_api, anon_api):
    therapist_api.patch(
        "/api/v1/therapists/me/settings", {"calendar_detail": "none"}, format="json"
    )
    calendar = icalendar.Calendar.from_ical(anon_api.get(_feed_url(therapist_api)).content)
    assert {str(e["SUMMARY"]) for e in calendar.walk("VEVENT")} == {"Session"}


def test_a_client_feed_shows_only_their_own_sessions(sessions, profile, anon_api):
    jane_api = api_client_for(sessions["jane"], mfa=False)
    calendar = icalendar.Calendar.from_ical(anon_api.get(_feed_url(jane_api)).content)
    events = calendar.walk("VEVENT")
    assert [str(e["UID"]) for e in events] == [f"{sessions['confirmed'].pk}@telehealth.invalid"]
    assert str(events[0]["SUMMARY"]) == f"Session with {profile.display_name}"


def test_aud_01_a_feed_fetch_is_audited_once_per_client_shown(sessions, therapist_api, anon_api):
    """AUD-01: a feed fetch writes one row per client shown, the feed's owner the actor."""
    url = _feed_url(therapist_api)
    anon_api.get(url)
    rows = AuditEvent.objects.filter(resource_type="scheduling.booking", action="list")
    assert sorted(str(r.patient_id) for r in rows) == sorted(
        [str(sessions["jane"].pk), str(sessions["john"].pk)]
    )
    owner = sessions["confirmed"].therapist.user_id
    assert all(r.outcome == "allowed" and r.actor_id == owner for r in rows)
    jane_row = rows.get(patient_id=sessions["jane"].pk)
    assert jane_row.details["ids"] == [str(sessions["confirmed"].pk)]  # the hold is not shown


def test_a_revoked_token_stops_working_at_once(sessions, therapist_api, anon_api):
    created = therapist_api.post(TOKENS).json()
    url = _path(created["url"])
    assert anon_api.get(url).status_code == 200
    assert therapist_api.delete(f"{TOKENS}/{created['id']}").status_code == 204
    assert anon_api.get(url).status_code == 404
    assert therapist_api.delete(f"{TOKENS}/{created['id']}").status_code == 404


def test_only_a_hash_of_the_token_is_stored_and_a_wrong_secret_fails(
    sessions, therapist_api, anon_api
):
    url = _feed_url(therapist_api)
    token = url.rsplit("/", 1)[1].removesuffix(".ics")
    row = CalendarFeedToken.objects.get()
    assert token[16:] not in row.secret_hash and row.lookup == token[:16]
    tampered = url.replace(token, token[:16] + ("A" if token[16] != "A" else "B") + token[17:])
    assert anon_api.get(tampered).status_code == 404
    assert anon_api.get(url.replace(token, "0" * 16 + token[16:])).status_code == 404


def test_aud_02_unknown_tokens_are_404_audited_as_denied_and_never_logged(
    sessions, therapist_api, anon_api, caplog
):
    url = _feed_url(therapist_api)
    token = url.rsplit("/", 1)[1].removesuffix(".ics")
    caplog.set_level(logging.DEBUG)
    wrong = "f" * 16 + "x" * 43
    response = anon_api.get(f"/api/v1/calendars/{wrong}.ics")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert wrong not in response.content.decode()
    denied = AuditEvent.objects.get(resource_type="scheduling.booking", outcome="denied")
    assert denied.patient_id is None and denied.actor_id is None
    assert denied.details["reason"] == "unknown_or_revoked_token"
    assert wrong not in str(denied.details)
    anon_api.get(url)
    assert token not in caplog.text and wrong not in caplog.text
    assert not AuditEvent.objects.filter(details__icontains=token[16:]).exists()


def test_feed_tokens_are_for_clients_and_therapists_only(compliance_api, therapist_api):
    assert compliance_api.post(TOKENS).status_code == 403
    assert not CalendarFeedToken.objects.exists()


def test_booking_ics_for_participants_only(sessions, therapist_api, anon_api):
    """AUD-01: each booking .ics download is one read row naming the client."""
    booking = sessions["confirmed"]
    url = f"/api/v1/bookings/{booking.pk}.ics"
    response = therapist_api.get(url)
    assert response.status_code == 200
    event = icalendar.Calendar.from_ical(response.content).walk("VEVENT")[0]
    assert str(event["UID"]) == f"{booking.pk}@telehealth.invalid"
    jane = api_client_for(sessions["jane"], mfa=False)
    assert (
        str(icalendar.Calendar.from_ical(jane.get(url).content).walk("VEVENT")[0]["SUMMARY"])
        == f"Session with {booking.therapist.display_name}"
    )
    assert anon_api.get(url).status_code == 401
    read = AuditEvent.objects.filter(resource_id=str(booking.pk), action="read", outcome="allowed")
    assert read.count() == 2 and {r.patient_id for r in read} == {sessions["jane"].pk}


def test_a_held_booking_downloads_as_tentative(sessions):
    booking = sessions["held"]
    jane = api_client_for(sessions["jane"], mfa=False)
    response = jane.get(f"/api/v1/bookings/{booking.pk}.ics")
    assert response.status_code == 200
    event = icalendar.Calendar.from_ical(response.content).walk("VEVENT")[0]
    assert str(event["STATUS"]) == "TENTATIVE"


def test_az_01_aud_02_someone_elses_booking_ics_is_404_and_audited(sessions, outsider):
    booking = sessions["confirmed"]
    response = api_client_for(outsider, mfa=False).get(f"/api/v1/bookings/{booking.pk}.ics")
    assert response.status_code == 404
    denied = AuditEvent.objects.get(resource_id=str(booking.pk), outcome="denied")
    assert denied.actor_id == outsider.pk and denied.details["reason"] == "not_found"
    assert denied.patient_id == sessions["jane"].pk  # whose record was asked for (AUD-02)


def test_round_trip_the_exported_feed_imported_as_busy_blocks_the_same_times(
    sessions, profile, therapist_api, anon_api, other_profile
):
    """Export the therapist's feed, import it into another therapist as a busy calendar: the
    busy times are exactly the live sessions, and both see the same open slots."""
    body = anon_api.get(_feed_url(therapist_api)).content
    now = timezone.now()
    # The importing therapist gets the same zone, hours and no buffers, so only busy times differ.
    services.therapist_profile_update(
        profile=other_profile, fields={"time_zone": profile.time_zone}, now=now
    )
    services.availability_rules_replace(
        profile=other_profile,
        windows=[services.WeeklyWindowInput(d, 9 * 60, 17 * 60) for d in range(5)],
        now=now,
    )
    calendar = services.external_calendar_upload(
        profile=other_profile, name="Feed", content=body, now=now
    )
    imported = list(
        ExternalBusyInterval.objects.filter(calendar=calendar)
        .order_by("start")
        .values_list("start", "end")
    )
    confirmed = sessions["confirmed"]
    assert imported == [(confirmed.start, confirmed.end)]  # cancelled and held are not exported

    sessions["held"].delete()  # holds are not in a feed: compare the exported state
    session_type = SessionType.objects.get(therapist=profile)
    other_type = SessionType.objects.get(therapist=other_profile)
    other_type.duration_minutes = session_type.duration_minutes
    other_type.save()
    other_profile.refresh_from_db()
    start, end = confirmed.start - timedelta(days=1), confirmed.start + timedelta(days=1)
    mine = selectors.therapist_open_slots(
        therapist=profile, session_type=session_type, start=start, end=end, now=now
    )
    theirs = selectors.therapist_open_slots(
        therapist=other_profile, session_type=other_type, start=start, end=end, now=now
    )
    assert mine == theirs and confirmed.start not in mine
