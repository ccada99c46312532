"""GET /api/v1/video/rooms/{booking_id}/attendance: who sees a session's attendance, what it
says, and that every read and refusal is audited."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

from api.models import Role
from audit.models import AuditEvent, Outcome
from scheduling.models import SessionType
from tests.factories import api_client_for, make_user
from tests.video.attendance_support import session, waited, was
from video.models import AttendanceInterval, AttendanceKind

pytestmark = pytest.mark.django_db

MINUTE = timedelta(minutes=1)


def url(booking_id: object) -> str:
    return f"/api/v1/video/rooms/{booking_id}/attendance"


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


@pytest.fixture
def start(fixed_clock: datetime) -> datetime:
    return fixed_clock.replace(second=0, microsecond=0) - 50 * MINUTE


def test_the_therapist_and_the_client_see_the_attended_time(start: datetime) -> None:
    """The client waited 2 minutes, was admitted, dropped once; the answer has each side's
    intervals and the overlap of their media, with the actual start and end."""
    setup = session(start)
    booking = setup.room.booking
    was(setup.therapist, start, 45)
    waited(setup.client, start + 1 * MINUTE, 2)
    was(setup.client, start + 3 * MINUTE, 10)
    was(setup.client, start + 14 * MINUTE, 30)

    for user in (setup.therapist.user, setup.client.user):
        response = api_client_for(user).get(url(booking.pk))
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["attended_seconds"] == 40 * 60
        assert (body["actual_start"], body["actual_end"]) == (
            iso(start + 3 * MINUTE),
            iso(start + 44 * MINUTE),
        )
        assert body["attended"] == [
            {"start": iso(start + 3 * MINUTE), "end": iso(start + 13 * MINUTE)},
            {"start": iso(start + 14 * MINUTE), "end": iso(start + 44 * MINUTE)},
        ]
        assert [p["role"] for p in body["participants"]] == ["therapist", "client"]
        client = body["participants"][1]
        assert client["first_present_at"] == iso(start + 1 * MINUTE)
        assert client["present"] == [
            {"start": iso(start + 1 * MINUTE), "end": iso(start + 13 * MINUTE)},
            {"start": iso(start + 14 * MINUTE), "end": iso(start + 44 * MINUTE)},
        ]
        assert (body["room"], body["no_show_deadline"]) == (
            str(setup.room.pk),
            iso(start + 15 * MINUTE),
        )
    reads = AuditEvent.objects.filter(resource_id=str(booking.pk), action="read")
    assert reads.count() == 2
    assert {e.patient_id for e in reads} == {setup.client.user.pk}
    assert all(e.details["route"].endswith("attendance") for e in reads)


def test_a_compliance_officer_sees_the_metadata(start: datetime) -> None:
    """Roles, times and durations: no name, no email, no address anywhere in the answer."""
    setup = session(start)
    was(setup.therapist, start, 45)
    was(setup.client, start, 45)
    officer = make_user(role=Role.COMPLIANCE_OFFICER, password=None)
    response = api_client_for(officer).get(url(setup.room.booking_id))
    assert response.status_code == 200
    text = response.content.decode()
    for user in (setup.therapist.user, setup.client.user):
        assert user.full_name not in text and user.email not in text
    assert response.json()["attended_seconds"] == 45 * 60
    assert AuditEvent.objects.filter(
        resource_id=str(setup.room.booking_id), action="read", actor_id=officer.pk
    ).exists()


def test_anyone_else_gets_the_answer_of_a_missing_booking_and_is_audited(start: datetime) -> None:
    setup = session(start)
    booking_id = setup.room.booking_id
    outsiders = [
        make_user(role=Role.CLIENT, password=None),
        make_user(role=Role.THERAPIST, password=None),
    ]
    missing = api_client_for(outsiders[0]).get(url(uuid.uuid4()))
    assert missing.status_code == 404
    for outsider in outsiders:
        theirs = api_client_for(outsider).get(url(booking_id))
        assert theirs.status_code == 404
        assert theirs.json()["code"] == missing.json()["code"] == "booking_not_found"
    denied = AuditEvent.objects.filter(resource_id=str(booking_id), outcome=Outcome.DENIED)
    assert denied.count() == 2
    assert {e.patient_id for e in denied} == {setup.client.user.pk}


def test_staff_without_a_second_factor_and_anonymous_callers_are_refused(start: datetime) -> None:
    setup = session(start)
    response = api_client_for(setup.therapist.user, mfa=False).get(url(setup.room.booking_id))
    assert (response.status_code, response.json()["code"]) == (403, "mfa_required")
    assert api_client_for(None).get(url(setup.room.booking_id)).status_code == 401


def test_an_in_person_session_has_no_attendance(start: datetime) -> None:
    setup = session(start)
    SessionType.objects.filter(pk=setup.room.booking.session_type_id).update(delivery="in_person")
    response = api_client_for(setup.client.user).get(url(setup.room.booking_id))
    assert (response.status_code, response.json()["code"]) == (409, "no_video")


def test_an_open_interval_counts_up_to_now(start: datetime, fixed_clock: datetime) -> None:
    """Both still connected: the attended time runs to the moment of the read (as_of)."""
    setup = session(start)
    for person in (setup.therapist, setup.client):
        AttendanceInterval.objects.create(
            participant=person.participant, kind=AttendanceKind.MEDIA, started_at=start
        )
    body = api_client_for(setup.client.user).get(url(setup.room.booking_id)).json()
    as_of = datetime.fromisoformat(body["as_of"])
    assert body["attended_seconds"] == int((as_of - start).total_seconds())
    assert body["actual_end"] == body["as_of"]
