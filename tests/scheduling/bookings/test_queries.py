"""What one booking costs in database statements, so the count cannot silently grow back.

``POST /api/v1/bookings/`` with an ``Idempotency-Key`` (as a real client sends it): the request's
transaction, the token check, the idempotency claim (one statement), the client's lock, the
therapist's lock (which also reads the session type, the policy, the licence / new-client /
overlap facts and whether any hold ran out), the slot engine's read (the therapist's rules and
overrides, bookings and imported busy times: one query), the booking, transition and
notification inserts (one statement on PostgreSQL, ``insert_together``; three elsewhere),
marking the directory summary stale, the stored response and the request's one audit INSERT
(through the service alone the audit event is its own INSERT). Counted inside the test's
transaction, so BEGIN/COMMIT show as SAVEPOINT/RELEASE.

Before these budgets: 24 statements over HTTP, 17 through the service; then 19 and 14, 16
and 11, 15 and 10, and 13 and 8 before the three inserts went as one on PostgreSQL (11 and 6
there). The three inserts went back to one statement each for a while (measured then as
saving no CPU), and the answer read the booking's payment: 14 over HTTP; 13 since a booking
just inserted is known to have none (``contributions.BookingPayment.none_yet``), and 11 on
PostgreSQL again since a same-box A/B showed the one INSERT pays (ADR 0004).
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from scheduling.bookings import services
from scheduling.models import Booking
from tests.scheduling.bookings.conftest import NOW, open_starts, session_type_of

pytestmark = pytest.mark.django_db

HTTP_BOOKING_MAX_QUERIES = 13
SERVICE_BOOKING_MAX_QUERIES = 8
INSERTS_SAVED_ON_POSTGRESQL = 2  # the booking's, transition's and emails' rows in one INSERT


def _budget(queries: int) -> int:
    return queries - (INSERTS_SAVED_ON_POSTGRESQL if connection.vendor == "postgresql" else 0)


def test_a_booking_over_http_stays_within_its_query_budget(
    profile, client_api, django_assert_max_num_queries
):
    start = open_starts(profile, now=timezone.now(), days=10)[0]
    body = {
        "therapist": str(profile.pk),
        "session_type": str(session_type_of(profile).pk),
        "start": start.isoformat(),
        "jurisdiction": "US-NY",
    }
    with django_assert_max_num_queries(_budget(HTTP_BOOKING_MAX_QUERIES)):
        response = client_api.post(
            "/api/v1/bookings/", body, format="json", HTTP_IDEMPOTENCY_KEY="budget-1"
        )
    assert response.status_code == 201, response.content


def test_a_booking_through_the_service_stays_within_its_query_budget(
    profile, client_user, django_assert_max_num_queries
):
    start = open_starts(profile)[0]
    session_type = session_type_of(profile)
    with django_assert_max_num_queries(_budget(SERVICE_BOOKING_MAX_QUERIES)):
        booking = services.booking_create(
            client=client_user,
            therapist_id=profile.pk,
            session_type_id=session_type.pk,
            start=start,
            jurisdiction="US-NY",
            now=NOW,
        )
    assert Booking.objects.filter(pk=booking.pk).exists()
