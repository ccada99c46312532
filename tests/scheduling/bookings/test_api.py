"""The booking endpoints per role, with object-level permissions (AZ-01..AZ-04), audit rows for
every access, Idempotency-Key on creation, and problem+json refusals that change nothing."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from api.models import IdempotencyRecord, Role
from audit.models import AuditEvent, Outcome
from scheduling.bookings import selectors, services
from scheduling.models import Booking, BookingStatus, BookingTransition, FeeRequest
from tests.factories import api_client_for, make_user
from tests.scheduling.bookings.conftest import open_starts, session_type_of

pytestmark = pytest.mark.django_db

URL = "/api/v1/bookings/"


@pytest.fixture
def starts(profile):
    """Open starts from tomorrow on, on the real clock (the views read it)."""
    return open_starts(profile, now=timezone.now(), days=10)


def _body(profile, start, **extra):
    return {
        "therapist": str(profile.pk),
        "session_type": str(session_type_of(profile).pk),
        "start": start.isoformat(),
        "jurisdiction": "US-NY",
        **extra,
    }


def _book(api, profile, start, **headers):
    response = api.post(URL, _body(profile, start), format="json", **headers)
    assert response.status_code == 201, response.content
    return response.json()


def _events(**filters):
    return list(AuditEvent.objects.filter(resource_type="scheduling.booking", **filters))


# --- Creating -----------------------------------------------------------------------------------


def test_a_client_books_an_offered_slot_and_gets_a_hold(profile, client_user, client_api, starts):
    body = _book(client_api, profile, starts[0])
    assert body["status"] == "held"
    assert body["start"] == starts[0].isoformat().replace("+00:00", "Z")
    assert body["therapist"]["id"] == str(profile.pk)
    assert body["client"] == {"id": str(client_user.pk), "full_name": client_user.full_name}
    assert (body["price_minor"], body["currency"]) == (12000, "USD")
    assert body["terms"] == {"free_until_hours": 24, "late_fee_kind": "none", "late_fee_value": 0}
    assert body["fee_request"] is None
    # One audit event for the creation (the service's, with its details), naming the client.
    [event] = _events(resource_id=body["id"])
    assert (event.action, event.actor_id, event.patient_id, event.outcome) == (
        "create",
        client_user.pk,
        client_user.pk,
        Outcome.ALLOWED,
    )
    assert event.details["to"] == "held"


def test_the_idempotency_key_replays_the_same_booking(profile, client_api, starts):
    headers = {"HTTP_IDEMPOTENCY_KEY": "book-once-123"}
    first = _book(client_api, profile, starts[0], **headers)
    replay = client_api.post(URL, _body(profile, starts[0]), format="json", **headers)
    assert replay.status_code == 201 and replay["Idempotency-Replayed"] == "true"
    assert replay.json()["id"] == first["id"]
    assert Booking.objects.count() == 1


@pytest.mark.parametrize(
    "extra",
    [
        {"price_minor": 1},
        {"amount": 1},
        {"currency": "EUR"},
        {"status": "confirmed"},
        {"client": "00000000-0000-0000-0000-000000000001"},
        {"hold_expires_at": "2099-01-01T00:00:00Z"},
        {"role": "admin"},
        {"is_staff": True},
    ],
)
def test_az_02_a_client_cannot_set_price_status_or_owner(profile, client_api, starts, extra):
    """AZ-02 (BOPLA): fields the server decides are refused, and nothing is written."""
    response = client_api.post(URL, _body(profile, starts[0], **extra), format="json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == next(iter(extra))
    assert not Booking.objects.exists()


@pytest.mark.parametrize(
    "change",
    [
        {"start": "2030-01-01T09:00:00"},  # no offset
        {"start": "soon"},
        {"jurisdiction": "New York"},
        {"jurisdiction": "us-ny"},
        {"therapist": "not-a-uuid"},
        {"session_type": None},
        {"start": "9999-12-31T23:59:00+00:00"},  # GEN-02: no overflow into a 500
        {"start": "0001-01-01T00:00:00+14:00"},
    ],
)
def test_malformed_input_is_a_400_problem(profile, client_api, starts, change):
    response = client_api.post(URL, {**_body(profile, starts[0]), **change}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "validation_error"
    assert not Booking.objects.exists()


def test_a_taken_slot_is_a_409_problem_and_writes_nothing(profile, client_api, outsider, starts):
    _book(api_client_for(outsider, mfa=False), profile, starts[0])
    before = (Booking.objects.count(), AuditEvent.objects.count())
    response = client_api.post(URL, _body(profile, starts[0]), format="json")
    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "slot_unavailable"
    assert (Booking.objects.count(), AuditEvent.objects.count()) == before


@pytest.mark.postgres
def test_an_overlap_only_the_exclusion_constraint_sees_is_a_409_and_frees_the_key(
    profile, client_api, outsider, starts, monkeypatch
):
    """If the checks under the locks ever missed a booking, the database's constraint refuses
    the insert: the answer is still a 409 problem, nothing is written, and the same
    Idempotency-Key runs again (its claim went with the rolled-back transaction)."""
    _book(api_client_for(outsider, mfa=False), profile, starts[0])
    monkeypatch.setattr(selectors, "slot_is_open", lambda **kwargs: True)
    counts = (Booking.objects.count, AuditEvent.objects.count, IdempotencyRecord.objects.count)
    before = [count() for count in counts]

    response = client_api.post(
        URL, _body(profile, starts[0]), format="json", HTTP_IDEMPOTENCY_KEY="overlap-1"
    )

    assert response.status_code == 409, response.content
    assert response.json()["code"] == "slot_unavailable"
    assert [count() for count in counts] == before
    monkeypatch.undo()
    assert _book(client_api, profile, starts[-1], HTTP_IDEMPOTENCY_KEY="overlap-1")


def test_not_licensed_there_is_a_422(profile, client_api, starts):
    response = client_api.post(URL, _body(profile, starts[0], jurisdiction="US-CA"), format="json")
    assert response.status_code == 422 and response.json()["code"] == "therapist_not_licensed"


def test_only_clients_book(profile, therapist_api, compliance_api, anon_api, starts):
    assert therapist_api.post(URL, _body(profile, starts[0]), format="json").status_code == 403
    assert compliance_api.post(URL, _body(profile, starts[0]), format="json").status_code == 403
    assert anon_api.post(URL, _body(profile, starts[0]), format="json").status_code == 401
    assert not Booking.objects.exists()


# --- Reading: AZ-01 and AZ-03 ---------------------------------------------------------------------


def test_az_01_someone_elses_booking_is_404_like_a_missing_one(
    profile, client_api, outsider, other_therapist, starts
):
    """AZ-01: another client's or another therapist's booking id answers exactly like an id
    that does not exist (no existence oracle), and the denial is audited."""
    booking = _book(client_api, profile, starts[0])
    missing = "00000000-0000-4000-8000-000000000000"
    for api in (api_client_for(outsider, mfa=False), api_client_for(other_therapist)):
        for suffix in (
            "",
            "/cancel",
            "/reschedule",
            "/confirm",
            "/complete",
            "/no-show",
            "/therapist-no-show",
        ):
            method = api.get if suffix == "" else api.post
            body = {"reason": "other"} if suffix == "/cancel" else {}
            if suffix == "/reschedule":
                body = {"start": starts[3].isoformat()}
            theirs = method(f"{URL}{booking['id']}{suffix}", body, format="json")
            nothing = method(f"{URL}{missing}{suffix}", body, format="json")
            if theirs.status_code == 403:  # a client on a therapist-only action: by role
                assert nothing.status_code == 403
                continue
            assert theirs.status_code == nothing.status_code == 404, (suffix, theirs.content)
            strip = ("instance", "request_id")
            assert {k: v for k, v in theirs.json().items() if k not in strip} == {
                k: v for k, v in nothing.json().items() if k not in strip
            }
    assert Booking.objects.get(pk=booking["id"]).status == BookingStatus.HELD
    denied = _events(resource_id=booking["id"], outcome=Outcome.DENIED)
    assert denied and {e.patient_id for e in denied} == {Booking.objects.get().client_id}
    # Each denial names what was attempted (a POST to a booking creates nothing).
    assert {e.action for e in denied} == {
        "read",
        "cancel",
        "reschedule",
        "confirm",
        "complete",
        "no_show",
        "therapist_no_show",
    }


def test_compliance_officers_and_admins_see_no_bookings_here(
    profile, client_api, compliance_api, admin_user, starts
):
    booking = _book(client_api, profile, starts[0])
    admin_api = api_client_for(admin_user)
    for api in (compliance_api, admin_api):
        assert api.get(URL).status_code == 403
        assert api.get(f"{URL}{booking['id']}").status_code == 403
        assert api.get("/api/v1/therapists/me/schedule", {"date": "2030-01-01"}).status_code == 403


def test_az_04_no_break_glass_path_exists(profile, client_api, compliance_api, starts):
    """AZ-04: this API offers no break-glass access; asking for it (a purpose of use, a
    header) changes nothing for staff without a treatment relationship."""
    booking = _book(client_api, profile, starts[0])
    for query in ({"purpose": "ETREAT"}, {"break_glass": "1", "reason": "emergency"}):
        response = compliance_api.get(f"{URL}{booking['id']}", query, HTTP_X_BREAK_GLASS="ETREAT")
        assert response.status_code == 403
    other = api_client_for(make_user(role=Role.THERAPIST))
    response = other.get(f"{URL}{booking['id']}", {"purpose": "ETREAT"})
    assert response.status_code == 404


def test_az_03_lists_hold_only_the_callers_rows_whatever_the_parameters(
    profile, other_profile, client_user, client_api, outsider, therapist_api, starts
):
    """AZ-03: pagination, filters, ordering and search parameters never widen a list."""
    mine = _book(client_api, profile, starts[0])
    outsider_api = api_client_for(outsider, mfa=False)
    theirs = _book(outsider_api, profile, starts[2])
    # The client's own second booking must not overlap the first (that is a 409 client_overlap).
    elsewhere = next(
        start
        for start in open_starts(other_profile, now=timezone.now())
        if abs(start - starts[0]) >= timedelta(hours=2)
    )
    mine_elsewhere = client_api.post(
        URL,
        {**_body(other_profile, elsewhere), "jurisdiction": "GB"},
        format="json",
    ).json()
    for params in (
        {},
        {"page_size": 1},
        {"ordering": "client__email"},
        {"search": outsider.email},
        {"client": str(outsider.pk)},
        {"therapist": str(profile.pk)},
    ):
        ids = set()
        url, query = URL, params
        while url:
            page = client_api.get(url, query)
            assert page.status_code == 200
            ids |= {row["id"] for row in page.json()["results"]}
            url, query = page.json()["next"], None
        assert ids == {mine["id"], mine_elsewhere["id"]}, params
    therapist_ids = {row["id"] for row in therapist_api.get(URL).json()["results"]}
    assert therapist_ids == {mine["id"], theirs["id"]}


def test_a_participant_reads_the_booking_with_its_history_and_the_read_is_audited(
    profile, client_user, client_api, therapist, therapist_api, starts
):
    """AUD-01, AUD-05: each participant's read is one row, the JWT subject its actor."""
    booking = _book(client_api, profile, starts[0])
    services.booking_confirm(booking_id=booking["id"], now=timezone.now())
    for api, user in ((client_api, client_user), (therapist_api, therapist)):
        response = api.get(f"{URL}{booking['id']}")
        assert response.status_code == 200
        assert [
            (t["from_status"], t["to_status"], t["by"]) for t in response.json()["transitions"]
        ] == [
            ("", "held", "client"),
            ("held", "confirmed", "billing"),
        ]
        [read] = _events(resource_id=booking["id"], action="read", actor_id=user.pk)
        assert read.patient_id == client_user.pk


def test_a_list_is_audited_once_per_client(
    profile, client_user, client_api, outsider, therapist, therapist_api, starts
):
    """AUD-01: a booking list writes one row per client shown."""
    _book(client_api, profile, starts[0])
    _book(api_client_for(outsider, mfa=False), profile, starts[2])
    assert therapist_api.get(URL).status_code == 200
    events = _events(action="list", actor_id=therapist.pk)
    assert sorted(str(e.patient_id) for e in events) == sorted(
        [str(client_user.pk), str(outsider.pk)]
    )


# --- Changing -----------------------------------------------------------------------------------


def test_the_client_cancels_and_sees_what_billing_was_asked(profile, client_api, starts):
    booking = _book(client_api, profile, starts[0])
    services.booking_confirm(booking_id=booking["id"], now=timezone.now())
    response = client_api.post(f"{URL}{booking['id']}/cancel", {"reason": "personal"})
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    assert response.json()["fee_request"] == {
        "kind": "full_refund",
        "reason": "client_cancelled_in_time",
        "fee_minor": 0,
        "refund_minor": 12000,
        "currency": "USD",
        "state": "pending",
    }
    [event] = _events(resource_id=booking["id"], action="cancel")
    assert event.details == {"from": "confirmed", "to": "cancelled", "reason": "personal"}
    again = client_api.post(f"{URL}{booking['id']}/cancel", {"reason": "personal"})
    assert again.status_code == 409
    assert (again.json()["code"], again.json()["current_status"]) == (
        "illegal_transition",
        "cancelled",
    )
    assert FeeRequest.objects.count() == 1


def test_an_illegal_transition_answers_with_the_current_state(
    profile, client_api, therapist_api, starts
):
    booking = _book(client_api, profile, starts[0])
    client_api.post(f"{URL}{booking['id']}/cancel", {"reason": "other"})
    response = therapist_api.post(f"{URL}{booking['id']}/confirm")
    assert response.status_code == 409
    body = response.json()
    assert (body["code"], body["current_status"], body["status"]) == (
        "illegal_transition",
        "cancelled",
        409,
    )


def test_a_free_text_cancel_reason_is_refused(profile, client_api, starts):
    booking = _book(client_api, profile, starts[0])
    response = client_api.post(
        f"{URL}{booking['id']}/cancel", {"reason": "I have been feeling very low"}
    )
    assert response.status_code == 400
    assert Booking.objects.get(pk=booking["id"]).status == BookingStatus.HELD


def test_the_client_reschedules_to_another_open_slot(profile, client_api, starts):
    booking = _book(client_api, profile, starts[0])
    response = client_api.post(
        f"{URL}{booking['id']}/reschedule", {"start": starts[4].isoformat()}, format="json"
    )
    assert response.status_code == 200, response.content
    moved = Booking.objects.get(pk=booking["id"])
    assert moved.start == starts[4]
    assert BookingTransition.objects.filter(booking=moved, reason="rescheduled").count() == 1
    [event] = _events(resource_id=booking["id"], action="reschedule")
    assert event.details == {"status": "held"}


def test_the_therapist_confirms_a_session_paid_outside(profile, client_api, therapist_api, starts):
    booking = _book(client_api, profile, starts[0])
    assert client_api.post(f"{URL}{booking['id']}/confirm").status_code == 403
    response = therapist_api.post(f"{URL}{booking['id']}/confirm")
    assert response.status_code == 200 and response.json()["status"] == "confirmed"
    transition = BookingTransition.objects.get(booking_id=booking["id"], to_status="confirmed")
    assert transition.reason == "paid_outside"
    early = therapist_api.post(f"{URL}{booking['id']}/complete")
    assert early.status_code == 409 and early.json()["code"] == "not_started"


# --- The therapist's schedule -------------------------------------------------------------------


def test_the_therapists_schedule_by_day_week_and_range_with_client_names(
    profile, client_user, client_api, outsider, therapist_api, other_therapist, starts
):
    """AUD-01: each schedule call writes one list row per client it shows."""
    first = _book(client_api, profile, starts[0])
    next_day = [s for s in starts if s.date() > starts[0].date()][0]
    second = _book(api_client_for(outsider, mfa=False), profile, next_day)
    schedule = "/api/v1/therapists/me/schedule"
    day = starts[0].astimezone(timezone.get_fixed_timezone(-240)).date().isoformat()

    by_day = therapist_api.get(schedule, {"period": "day", "date": day, "tz": "America/New_York"})
    assert by_day.status_code == 200, by_day.content
    assert [b["id"] for b in by_day.json()] == [first["id"]]
    assert by_day.json()[0]["client"]["full_name"] == client_user.full_name

    week = therapist_api.get(schedule, {"period": "week", "date": day})
    expected_week = {first["id"]} | (
        {second["id"]} if next_day.isocalendar()[1] == starts[0].isocalendar()[1] else set()
    )
    assert {b["id"] for b in week.json()} == expected_week

    rng = therapist_api.get(
        schedule,
        {
            "period": "range",
            "start": (starts[0] - timedelta(hours=1)).isoformat(),
            "end": (next_day + timedelta(hours=1)).isoformat(),
        },
    )
    assert [b["id"] for b in rng.json()] == [first["id"], second["id"]]
    # Another therapist's schedule holds none of these.
    other = api_client_for(other_therapist)
    other.post("/api/v1/therapists/me/profile", {"display_name": "X", "time_zone": "UTC"})
    assert other.get(schedule, {"period": "week", "date": day}).json() == []
    # Each call: one list event per client it showed, and none for the other therapist's.
    for response, shown in ((by_day, [client_user]), (rng, [client_user, outsider])):
        events = AuditEvent.objects.filter(request_id=response["X-Request-ID"])
        assert sorted((e.action, e.outcome, str(e.patient_id)) for e in events) == sorted(
            ("list", "allowed", str(c.pk)) for c in shown
        )


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"period": "day"},
        {"period": "range", "start": "2030-01-01T00:00:00Z"},
        {"period": "range", "start": "2030-01-01T00:00:00Z", "end": "2031-01-01T00:00:00Z"},
        {"period": "week", "date": "2030-13-01"},
        {"period": "day", "date": "2030-01-01", "tz": "Mars/Olympus"},
        {"period": "day", "date": "2030-01-01", "client": "x"},
        {"period": "week", "date": "9999-12-31"},
        {"period": "day", "date": "0001-01-01", "tz": "Pacific/Kiritimati"},
    ],
)
def test_bad_schedule_queries_are_400(profile, therapist_api, query):
    assert therapist_api.get("/api/v1/therapists/me/schedule", query).status_code == 400


# --- Series over HTTP ---------------------------------------------------------------------------


def test_a_series_over_http_dry_run_abort_and_skip(profile, client_api, outsider, starts):
    series = f"{URL}series"
    body = {
        "therapist": str(profile.pk),
        "session_type": str(session_type_of(profile).pk),
        "first_start": starts[0].isoformat(),
        "frequency": "weekly",
        "count": 3,
        "jurisdiction": "US-NY",
    }
    preview = client_api.post(series, {**body, "dry_run": True}, format="json")
    assert preview.status_code == 200
    assert [o["code"] for o in preview.json()["occurrences"]] == ["", "", ""]
    assert not Booking.objects.exists()

    # A week later at the same local time: not 7 × 24 h when a DST change falls between.
    second = datetime.fromisoformat(preview.json()["occurrences"][1]["start"])
    _book(api_client_for(outsider, mfa=False), profile, second)
    aborted = client_api.post(series, body, format="json")
    assert aborted.status_code == 409
    assert [c["index"] for c in aborted.json()["conflicts"]] == [1]
    assert Booking.objects.count() == 1

    skipped = client_api.post(series, {**body, "on_conflict": "skip"}, format="json")
    assert skipped.status_code == 201
    occurrences = skipped.json()["occurrences"]
    assert [o["booking"] is not None for o in occurrences] == [True, False, True]
    assert occurrences[1]["code"] == "slot_unavailable"
    assert skipped.json()["series"] is not None


# --- Cancellation policy ------------------------------------------------------------------------


def test_a_therapist_sets_their_cancellation_policy(profile, therapist_api, client_api):
    url = "/api/v1/therapists/me/cancellation-policy"
    assert therapist_api.get(url).json() == {
        "free_until_hours": 24,
        "late_fee_kind": "none",
        "late_fee_value": 0,
    }
    policy = {"free_until_hours": 48, "late_fee_kind": "percent", "late_fee_value": 50}
    assert therapist_api.put(url, policy, format="json").json() == policy
    assert therapist_api.get(url).json() == policy
    bad = therapist_api.put(url, {**policy, "late_fee_value": 150}, format="json")
    assert bad.status_code == 422
    assert therapist_api.put(url, {**policy, "therapist": "x"}, format="json").status_code == 400
    assert client_api.put(url, policy, format="json").status_code == 403


def test_no_token_is_a_401_audited_without_naming_the_client(profile, client_api, anon_api, starts):
    """AUD-03 on the booking routes: the denial is recorded, but no patient is disclosed."""
    booking = _book(client_api, profile, starts[0])
    response = anon_api.get(f"{URL}{booking['id']}")
    assert response.status_code == 401
    [event] = _events(resource_id=booking["id"], outcome=Outcome.DENIED)
    assert (event.actor_id, event.patient_id, event.actor_label) == (None, None, "anonymous")
