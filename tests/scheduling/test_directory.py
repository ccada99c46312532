"""The public directory: who is listed, filters, soonest-availability order, pagination, and
the precomputed availability summary that makes it fast."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import yaml
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from api.models import Role
from scheduling import services
from scheduling.filters import TherapistDirectoryFilter
from scheduling.models import NO_OPEN_SLOT_RANK, Licence, OpenSlotRun
from tests.factories import make_user
from tests.scheduling.conftest import make_booking, make_therapist

pytestmark = pytest.mark.django_db

URL = "/api/v1/therapists/"


def ids(response):
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["results"]]


def listed(now=None, **fields):
    return make_therapist(now=now or timezone.now(), **fields)


def test_only_therapists_with_a_verified_current_licence_are_listed(anon_api):
    visible = listed()
    unverified = listed(verified=False)
    expired = listed()
    Licence.objects.filter(therapist=expired).update(expires_on=date(2020, 1, 1))
    assert ids(anon_api.get(URL)) == [str(visible.pk)]
    assert anon_api.get(f"{URL}{unverified.pk}").status_code == 404
    assert anon_api.get(f"{URL}{expired.pk}").status_code == 404
    detail = anon_api.get(f"{URL}{visible.pk}").json()
    assert detail["session_types"][0]["price_minor"] == 12000
    assert detail["jurisdictions"] == ["US-NY"]


def test_filters_by_attributes_jurisdiction_price_delivery_accepting_and_text(anon_api):
    a = listed(
        specialties=["anxiety"], modalities=["cbt"], languages=["en", "es"], bio="Calm and kind"
    )
    b = listed(
        specialties=["grief"],
        modalities=["emdr"],
        languages=["fr"],
        jurisdiction="US-CA",
        price_minor=30000,
        accepting_new_clients=False,
        bio="A sunny room",
    )
    cases = {
        "specialty=anxiety": [a],
        "modality=emdr": [b],
        "language=es": [a],
        "jurisdiction=US-CA": [b],
        "jurisdiction=US-TX": [],
        "price_max=20000": [a],
        "price_min=20000&currency=USD": [b],
        "price_min=20000&currency=EUR": [],
        "accepting_new_clients=false": [b],
        "q=calm": [a],
        "q=SUNNY": [b],
        "delivery=in_person": [],
        "specialty=anxiety&language=fr": [],
    }
    for query, expected in cases.items():
        assert sorted(ids(anon_api.get(f"{URL}?{query}"))) == sorted(str(p.pk) for p in expected), (
            query
        )


def test_jurisdiction_filter_ignores_an_unverified_or_expired_licence_there(anon_api):
    therapist = listed()
    Licence.objects.create(
        therapist=therapist,
        jurisdiction="US-CA",
        number="X",
        expires_on=date(2031, 1, 1),
        created_at=timezone.now(),
    )
    assert ids(anon_api.get(f"{URL}?jurisdiction=US-CA")) == []


@pytest.mark.parametrize(
    "query",
    [
        "available_from=2030-01-01T00:00:00Z",  # without available_to
        "available_from=2030-01-02T00:00:00Z&available_to=2030-01-01T00:00:00Z",
        "available_from=2020-01-01T00:00:00Z&available_to=2099-01-01T00:00:00Z",  # too far
        "available_from=tomorrow&available_to=later",
        "price_min=-5",
        "price_min=10&price_max=5",
        "accepting_new_clients=maybe",
        "q=" + "x" * 101,
        "delivery=phone",
    ],
)
def test_invalid_directory_queries_are_400_problems(anon_api, query):
    listed()
    response = anon_api.get(f"{URL}?{query}")
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    # Every error carries a real code (the range checks said "None").
    assert all(e["code"] not in ("", "None") for e in response.json()["errors"])


def test_open_slot_between_a_and_b_and_soonest_first(anon_api):
    now = timezone.now()
    busy_week = listed(now=now)
    free = listed(now=now)
    # busy_week takes a week off from tomorrow: its next open slot is later.
    services.availability_override_create(
        profile=busy_week,
        kind="time_off",
        first_date=now.date(),
        last_date=now.date() + timedelta(days=9),
        now=now,
    )
    window = {
        "available_from": now.isoformat(),
        "available_to": (now + timedelta(days=7)).isoformat(),
    }
    assert ids(anon_api.get(URL, window)) == [str(free.pk)]
    everyone = anon_api.get(URL).json()["results"]
    assert [r["id"] for r in everyone] == [str(free.pk), str(busy_week.pk)]
    assert datetime.fromisoformat(everyone[0]["next_open_slot"]) < datetime.fromisoformat(
        everyone[1]["next_open_slot"]
    )


def test_a_window_on_a_day_off_finds_nobody(anon_api):
    now = timezone.now()
    therapist = listed(now=now)  # weekdays 09:00-17:00 New York
    ny = ZoneInfo("America/New_York")
    day = (now + timedelta(days=3)).astimezone(ny).date()
    while day.weekday() != 5:
        day += timedelta(days=1)
    saturday = datetime.combine(day, time(0), tzinfo=ny)
    monday = saturday + timedelta(days=2)
    weekend = {"available_from": saturday.isoformat(), "available_to": monday.isoformat()}
    assert ids(anon_api.get(URL, weekend)) == []
    to_tuesday = {
        "available_from": saturday.isoformat(),
        "available_to": (monday + timedelta(days=1)).isoformat(),
    }
    assert ids(anon_api.get(URL, to_tuesday)) == [str(therapist.pk)]


def test_the_summary_follows_rule_booking_and_settings_changes():
    now = datetime(2025, 6, 2, 8, tzinfo=UTC)
    therapist = listed(now=now, min_notice_minutes=0)
    first = therapist.next_open_slot
    assert first == datetime(2025, 6, 2, 13, tzinfo=UTC)  # Monday 09:00 New York
    # A booking at that time (issue 5 calls availability_summary_refresh after writing it).
    make_booking(
        therapist=therapist, client=make_user(role=Role.CLIENT, password=None), start=first, now=now
    )
    services.availability_summary_refresh(therapist=therapist, now=now)
    therapist.refresh_from_db()
    assert therapist.next_open_slot == datetime(2025, 6, 2, 14, tzinfo=UTC)  # after 09:00-09:50
    services.availability_rules_replace(profile=therapist, windows=[], now=now)
    therapist.refresh_from_db()
    assert therapist.next_open_slot is None and therapist.availability_rank == NO_OPEN_SLOT_RANK
    assert not OpenSlotRun.objects.filter(therapist=therapist).exists()


def test_refresh_availability_command_recomputes_stale_summaries():
    therapist = listed(now=datetime(2025, 1, 6, 8, tzinfo=UTC))
    assert therapist.next_open_slot.year == 2025
    call_command("refresh_availability", stdout=io.StringIO())
    therapist.refresh_from_db()
    assert therapist.next_open_slot > timezone.now()
    computed = therapist.availability_computed_at
    call_command("refresh_availability", stdout=io.StringIO())
    therapist.refresh_from_db()
    assert therapist.availability_computed_at == computed  # fresh: left alone


def test_keyset_pagination_walks_ties_without_repeats_or_gaps(anon_api):
    now = timezone.now()
    made = {str(listed(now=now).pk) for _ in range(5)}
    # Everyone has the same hours and zone: their next open slot ties.
    seen = []
    url = f"{URL}?page_size=2"
    while url:
        response = anon_api.get(url)
        seen += ids(response)
        url = response.json()["next"]
    assert len(seen) == len(set(seen)) == 5 and set(seen) == made
    assert anon_api.get(f"{URL}?cursor=garbage").status_code == 404


def test_directory_query_count_does_not_grow_with_results(anon_api):
    for _ in range(2):
        listed()
    with CaptureQueriesContext(connection) as two:
        anon_api.get(URL)
    for _ in range(4):
        listed()
    with CaptureQueriesContext(connection) as six:
        assert len(ids(anon_api.get(URL))) == 6
    assert len(six) == len(two) <= 5


def test_az_03_directory_ordering_and_fields_leak_no_private_data(anon_api):
    therapist = listed()
    item = anon_api.get(URL, {"ordering": "user__email"}).json()["results"][0]
    assert item["id"] == str(therapist.pk)
    assert "user" not in item and "email" not in str(item) and "licences" not in item
    assert not any("number" in str(v) for v in item.values() if isinstance(v, dict))


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    [
        {"price_min": "1e500"},
        {"price_max": "-1"},
        {"accepting_new_clients": "yes"},
        {"page_size": "abc"},
    ],
)
def test_api_03_directory_parameters_outside_their_schema_are_a_400(anon_api, query):
    response = anon_api.get(URL, query)
    assert response.status_code == 400
    assert {e["field"] for e in response.json()["errors"]} == set(query)


def test_api_04_a_filter_sent_empty_filters_nothing_as_the_schema_says(anon_api):
    """API-04: ``?delivery=`` is a filter left blank (as a web form sends it), not an error;
    the schema marks every filter ``allowEmptyValue``, so a generator may send it too."""
    visible = listed()
    document = yaml.safe_load((settings.BASE_DIR / "openapi.yaml").read_text())
    parameters = document["paths"][URL]["get"]["parameters"]
    filters = TherapistDirectoryFilter.base_filters
    for parameter in parameters:
        assert parameter.get("allowEmptyValue", False) is (parameter["name"] in filters)
    assert ids(anon_api.get(URL, dict.fromkeys(filters, ""))) == [str(visible.pk)]
