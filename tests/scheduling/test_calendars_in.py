"""External busy calendars: ICS upload and URL subscription (fetched from a loopback server),
recurrence expansion, refusals that change nothing, and the SSRF guard."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command
from django.utils import timezone

from scheduling import fetch, services
from scheduling.models import ExternalBusyInterval, ExternalCalendar
from scheduling.services import calendars
from tests.scheduling.conftest import NOW

pytestmark = pytest.mark.django_db

URL = "/api/v1/therapists/me/calendars"

RECURRING = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VEVENT
UID:weekly@test
DTSTART;TZID=America/New_York:20250602T100000
DTEND;TZID=America/New_York:20250602T110000
RRULE:FREQ=WEEKLY;COUNT=4
EXDATE;TZID=America/New_York:20250609T100000
RDATE;TZID=America/New_York:20250605T120000
SUMMARY:Supervision
END:VEVENT
BEGIN:VEVENT
UID:weekly@test
RECURRENCE-ID;TZID=America/New_York:20250616T100000
DTSTART;TZID=America/New_York:20250616T150000
DTEND;TZID=America/New_York:20250616T160000
END:VEVENT
BEGIN:VEVENT
UID:allday@test
DTSTART;VALUE=DATE:20250604
DTEND;VALUE=DATE:20250605
SUMMARY:Conference
END:VEVENT
BEGIN:VEVENT
UID:free@test
DTSTART:20250603T140000Z
DTEND:20250603T150000Z
TRANSP:TRANSPARENT
END:VEVENT
BEGIN:VEVENT
UID:cancelled@test
DTSTART:20250603T160000Z
DTEND:20250603T170000Z
STATUS:CANCELLED
END:VEVENT
BEGIN:VEVENT
UID:floating@test
DTSTART:20250610T080000
DTEND:20250610T083000
END:VEVENT
END:VCALENDAR
""".replace("\n", "\r\n")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def busy_of(calendar: ExternalCalendar) -> list[tuple[datetime, datetime]]:
    return list(
        ExternalBusyInterval.objects.filter(calendar=calendar)
        .order_by("start")
        .values_list("start", "end")
    )


def test_recurrences_overrides_all_day_transparent_and_floating_events(profile):
    calendar = services.external_calendar_upload(
        profile=profile, name="Work", content=RECURRING.encode(), now=NOW
    )
    assert busy_of(calendar) == [
        (utc(2025, 6, 2, 14), utc(2025, 6, 2, 15)),  # Mon 10:00 EDT
        (utc(2025, 6, 4, 4), utc(2025, 6, 5, 4)),  # all day, in the therapist's zone (NY)
        (utc(2025, 6, 5, 16), utc(2025, 6, 5, 17)),  # RDATE Thu 12:00 EDT
        # 9 June excluded (EXDATE)
        (utc(2025, 6, 10, 12), utc(2025, 6, 10, 12, 30)),  # floating 08:00 NY
        (utc(2025, 6, 16, 19), utc(2025, 6, 16, 20)),  # RECURRENCE-ID moved to 15:00
        (utc(2025, 6, 23, 14), utc(2025, 6, 23, 15)),
    ]


def test_imported_busy_times_remove_slots(profile):
    from scheduling import selectors
    from scheduling.models import SessionType

    session_type = SessionType.objects.get(therapist=profile)
    monday_10 = utc(2025, 6, 2, 14)
    assert selectors.slot_is_open(
        therapist=profile, session_type=session_type, start=monday_10 + timedelta(days=7), now=NOW
    )
    services.external_calendar_upload(
        profile=profile, name="Work", content=RECURRING.encode(), now=NOW
    )
    assert not selectors.slot_is_open(
        therapist=profile, session_type=session_type, start=utc(2025, 6, 23, 14), now=NOW
    )
    assert selectors.slot_is_open(  # the EXDATE'd Monday stays open
        therapist=profile, session_type=session_type, start=utc(2025, 6, 9, 14), now=NOW
    )


def _upload(api, ics: str):
    return api.post(URL, {"name": "Mine", "source": "upload", "ics": ics}, format="json")


def test_upload_through_the_api(profile, therapist_api):
    response = _upload(therapist_api, RECURRING)
    assert response.status_code == 201, response.content
    assert response.json()["source"] == "upload" and response.json()["url_host"] == ""
    calendar = ExternalCalendar.objects.get(pk=response.json()["id"])
    assert "Supervision" not in calendar.content_encrypted  # stored encrypted
    listed = therapist_api.get(URL).json()
    assert [c["id"] for c in listed] == [str(calendar.pk)]


@pytest.mark.parametrize(
    "ics",
    [
        "not a calendar at all",
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nDTSTART:2025X\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:no start\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        "BEGIN:VEVENT\r\nDTSTART:20250602T100000Z\r\nEND:VEVENT\r\n",
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:20250602T100000Z\r\nRRULE:FREQ=SOMETIMES\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    ],
)
def test_malformed_uploads_are_400_and_change_nothing(profile, therapist_api, ics):
    response = _upload(therapist_api, ics)
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"].startswith("calendar_")
    assert not ExternalCalendar.objects.exists() and not ExternalBusyInterval.objects.exists()


def test_a_huge_upload_is_413_and_changes_nothing(profile, therapist_api, settings):
    settings.CALENDAR_MAX_BYTES = 2048
    response = _upload(therapist_api, RECURRING + "X-PAD:" + "x" * 4096)
    assert response.status_code == 413
    assert response.json()["code"] == "calendar_too_large"
    assert not ExternalCalendar.objects.exists()


def test_an_rrule_that_explodes_is_refused(profile, monkeypatch):
    monkeypatch.setattr(calendars, "MAX_BUSY_PER_CALENDAR", 200)
    minutely = (
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:20250602T100000Z\r\n"
        "DTEND:20250602T100100Z\r\nRRULE:FREQ=MINUTELY\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    with pytest.raises(services.CalendarRefused) as refused:
        services.external_calendar_upload(
            profile=profile, name="x", content=minutely.encode(), now=NOW
        )
    assert refused.value.code == "calendar_too_many_events"
    assert not ExternalCalendar.objects.exists()


def test_az_01_another_therapists_calendar_cannot_be_deleted(profile, other_profile, therapist_api):
    theirs = services.external_calendar_upload(
        profile=other_profile, name="Theirs", content=RECURRING.encode(), now=NOW
    )
    assert therapist_api.delete(f"{URL}/{theirs.pk}").status_code == 404
    assert busy_of(theirs)
    mine = services.external_calendar_upload(
        profile=profile, name="Mine", content=RECURRING.encode(), now=NOW
    )
    assert therapist_api.delete(f"{URL}/{mine.pk}").status_code == 204
    assert not ExternalBusyInterval.objects.filter(calendar_id=mine.pk).exists()


# --- URL calendars ------------------------------------------------------------------------------


class _Calendars(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, bytes]] = {}
    release = threading.Event()
    requests: list[str] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        if self.path == "/hang":
            type(self).release.wait(5)
            return
        status, body = type(self).routes.get(self.path.split("?")[0], (404, b"missing"))
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "http://169.254.169.254/")
        self.send_header("Content-Type", "text/calendar")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def server(settings) -> Iterator[str]:
    """A calendar server on loopback, allowed by the SSRF allowlist for this test only."""
    settings.CALENDAR_FETCH_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.CALENDAR_FETCH_TIMEOUT_SECONDS = 2
    _Calendars.routes = {}
    _Calendars.requests = []
    _Calendars.release = threading.Event()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Calendars)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    _Calendars.release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _relative_calendar(now: datetime) -> bytes:
    start = (now + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    stamp = "%Y%m%dT%H%M%SZ"
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:a@test\r\n"
        f"DTSTART:{start.strftime(stamp)}\r\n"
        f"DTEND:{(start + timedelta(hours=1)).strftime(stamp)}\r\n"
        "RRULE:FREQ=DAILY;COUNT=3\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    ).encode()


def _sync() -> str:
    out = io.StringIO()
    call_command("sync_calendars", stdout=out)
    return out.getvalue().strip()


def test_url_calendar_is_fetched_by_sync_calendars_idempotently(profile, therapist_api, server):
    _Calendars.routes["/cal.ics"] = (200, _relative_calendar(timezone.now()))
    response = therapist_api.post(
        URL,
        {"name": "Google", "source": "url", "url": f"{server}/cal.ics?secret=abc"},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["url_host"] == "127.0.0.1" and "secret" not in str(response.json())
    calendar = ExternalCalendar.objects.get(pk=response.json()["id"])
    assert "secret=abc" not in calendar.url_encrypted
    assert _sync() == "sync_calendars: ok=1"
    assert len(busy_of(calendar)) == 3
    assert _sync() == "sync_calendars: nothing due"
    assert _Calendars.requests == ["/cal.ics?secret=abc"]
    assert len(busy_of(calendar)) == 3


def test_a_failed_fetch_keeps_the_previous_busy_times(profile, server):
    _Calendars.routes["/cal.ics"] = (200, _relative_calendar(timezone.now()))
    calendar = services.external_calendar_subscribe(
        profile=profile, name="G", url=f"{server}/cal.ics", now=timezone.now()
    )
    _sync()
    before = busy_of(calendar)
    for status, body, code in [
        (500, b"oops", "http_500"),
        (302, b"", "http_302"),  # redirects are not followed
        (200, b"garbage", "calendar_malformed"),
    ]:
        _Calendars.routes["/cal.ics"] = (status, body)
        ExternalCalendar.objects.filter(pk=calendar.pk).update(next_sync_at=timezone.now())
        assert services.external_calendar_claim(
            calendar_id=calendar.pk, now=timezone.now(), lease=timedelta(minutes=5)
        )
        assert services.external_calendar_sync(calendar_id=calendar.pk, now=timezone.now()) == code
        calendar.refresh_from_db()
        assert calendar.last_error == code and busy_of(calendar) == before


def test_a_calendar_is_claimed_by_one_worker_only(profile, server):
    calendar = services.external_calendar_subscribe(
        profile=profile, name="G", url=f"{server}/cal.ics", now=NOW
    )
    lease = timedelta(minutes=5)
    assert services.external_calendar_claim(calendar_id=calendar.pk, now=NOW, lease=lease)
    assert not services.external_calendar_claim(calendar_id=calendar.pk, now=NOW, lease=lease)
    # An abandoned claim expires.
    assert services.external_calendar_claim(
        calendar_id=calendar.pk, now=NOW + 2 * lease, lease=lease
    )


def test_fetch_enforces_the_size_cap_and_the_timeout(server):
    _Calendars.routes["/big"] = (200, b"x" * 5000)
    with pytest.raises(fetch.FetchError) as too_big:
        fetch.fetch(f"{server}/big", max_bytes=1000, timeout=2)
    assert too_big.value.code == "too_large"
    with pytest.raises(fetch.FetchError) as slow:
        fetch.fetch(f"{server}/hang", max_bytes=1000, timeout=0.2)
    assert slow.value.code == "timeout"


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("file:///etc/passwd", "url_scheme_not_allowed"),
        ("ftp://example.com/cal.ics", "url_scheme_not_allowed"),
        ("gopher://127.0.0.1:70/", "url_scheme_not_allowed"),
        ("http://user:pw@example.com/cal.ics", "url_invalid"),
        ("http://127.0.0.1:8000/cal.ics", "address_not_allowed"),
        ("http://localhost/cal.ics", "address_not_allowed"),
        ("http://10.1.2.3/cal.ics", "address_not_allowed"),
        ("http://192.168.0.10/cal.ics", "address_not_allowed"),
        ("http://169.254.169.254/latest/meta-data", "address_not_allowed"),
        ("http://[::1]/cal.ics", "address_not_allowed"),
        ("http://[::ffff:127.0.0.1]/cal.ics", "address_not_allowed"),
        ("http://0.0.0.0/cal.ics", "address_not_allowed"),
        ("webcal://127.0.0.1/cal.ics", "address_not_allowed"),
    ],
)
def test_ssrf_non_http_schemes_and_private_addresses_are_refused(profile, therapist_api, url, code):
    response = therapist_api.post(URL, {"name": "x", "source": "url", "url": url}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["code"] == code
    assert url not in response.content.decode()
    assert not ExternalCalendar.objects.exists()


def test_ssrf_a_name_rebound_to_a_private_address_after_subscribing_is_not_fetched(
    profile, monkeypatch
):
    calendar = services.external_calendar_subscribe(
        profile=profile, name="x", url="https://93.184.216.34/cal.ics", now=NOW
    )
    monkeypatch.setattr(
        fetch.socket,
        "getaddrinfo",
        lambda *a, **k: [(None, None, None, "", ("127.0.0.1", 443))],
    )
    assert services.external_calendar_claim(
        calendar_id=calendar.pk, now=NOW, lease=timedelta(minutes=1)
    )
    assert (
        services.external_calendar_sync(calendar_id=calendar.pk, now=NOW) == "address_not_allowed"
    )
