"""API-05: date-times that look valid but name no real instant, or lie at the ends of the
calendar, are a 400 problem on every endpoint that takes one (they were 500s), and change
nothing."""

from __future__ import annotations

import pytest

from api.models import IdempotencyRecord
from scheduling.models import Booking
from tests.scheduling.bookings.conftest import session_type_of

pytestmark = pytest.mark.django_db

# Each matches ISO 8601's shape; parse_datetime raises on all of them (no such day, hour,
# minute or offset).
NOT_REAL = [
    "2026-02-30T10:00:00Z",
    "2025-02-29T10:00:00Z",
    "2026-06-02T24:00:00Z",
    "2026-06-02T10:60:00Z",
    "2026-06-02T10:00:00+25:00",
]
# Real instants whose date arithmetic would overflow (slots were a 500, reachable anonymously).
CALENDAR_ENDS = ["0001-01-01T00:00:00Z", "9999-12-25T00:00:00Z"]


def _problem(response, field: str) -> None:
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert field in {error["field"] for error in response.json()["errors"]}


@pytest.mark.parametrize("value", NOT_REAL + CALENDAR_ENDS)
def test_api_05_slots_refuse_a_date_time_that_is_no_instant(anon_api, profile, value):
    response = anon_api.get(
        f"/api/v1/therapists/{profile.pk}/slots",
        {
            "start": value,
            "end": "2026-06-09T00:00:00Z",
            "session_type": session_type_of(profile).pk,
        },
    )
    _problem(response, "start")


@pytest.mark.parametrize("value", NOT_REAL + CALENDAR_ENDS)
def test_api_05_a_booking_refuses_a_start_that_is_no_instant(client_api, profile, value):
    body = {
        "therapist": str(profile.pk),
        "session_type": str(session_type_of(profile).pk),
        "start": value,
        "jurisdiction": "US-NY",
    }
    response = client_api.post("/api/v1/bookings/", body, format="json")
    _problem(response, "start")
    series = client_api.post(
        "/api/v1/bookings/series",
        {**{k: v for k, v in body.items() if k != "start"}, "first_start": value, "count": 2}
        | {"frequency": "weekly"},
        format="json",
    )
    _problem(series, "first_start")
    assert not Booking.objects.exists()
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.parametrize("value", NOT_REAL)
def test_api_05_a_reschedule_refuses_a_start_that_is_no_instant(client_api, value):
    # The body is checked before the booking is looked up: any booking id shows it.
    response = client_api.post(
        "/api/v1/bookings/6f1c1d7e-8a43-4a8e-9d0b-2f5b2b0c9a11/reschedule",
        {"start": value},
        format="json",
    )
    _problem(response, "start")


@pytest.mark.parametrize("value", NOT_REAL + CALENDAR_ENDS)
def test_api_05_the_schedule_refuses_a_bound_that_is_no_instant(therapist_api, profile, value):
    response = therapist_api.get(
        "/api/v1/therapists/me/schedule",
        {"period": "range", "start": value, "end": "2026-06-09T00:00:00Z"},
    )
    _problem(response, "start")


@pytest.mark.parametrize("value", NOT_REAL)
def test_api_05_the_audit_trail_refuses_a_since_that_is_no_instant(compliance_api, value):
    response = compliance_api.get("/api/v1/audit/events", {"since": value})
    _problem(response, "since")
