"""``openapi.yaml`` stays usable by client generators: openapi-python-client generates a Python
client from it, and a short client journey written against that client (sign in, search the
directory, read a therapist's slots, book one) passes ``mypy --strict``. Types only: nothing
is sent over the network.

A document the generator cannot read (an error, not a warning), an operation renamed, or a
shape changed so that the journey no longer type-checks fails here, before a client's build
breaks. Warnings are allowed (today: the audit exports' NDJSON bodies, whose content types the
generator does not model, are left out of the generated client).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PACKAGE = "telehealth_client"

JOURNEY = '''
"""A client's booking, as an app built on the generated client would write it."""

from __future__ import annotations

import datetime
import uuid

from telehealth_client import AuthenticatedClient, Client
from telehealth_client.api.auth import auth_token
from telehealth_client.api.bookings import bookings_create
from telehealth_client.api.directory import therapists_list, therapists_slots_retrieve
from telehealth_client.models import (
    BookingInRequest,
    BookingOut,
    MfaChallenge,
    PaginatedDirectoryItemOutList,
    SignInRequest,
    SignInTokens,
    SlotsOut,
)
from telehealth_client.types import Unset


def sign_in(base_url: str, email: str, password: str) -> AuthenticatedClient:
    anonymous = Client(base_url=base_url)
    answer = auth_token.sync(client=anonymous, body=SignInRequest(email=email, password=password))
    if isinstance(answer, MfaChallenge):
        raise RuntimeError(f"a second factor is needed: {answer.mfa_token}")
    if not isinstance(answer, SignInTokens):
        raise RuntimeError(f"refused: {answer}")
    access: str = answer.access
    return AuthenticatedClient(base_url=base_url, token=access)


def book_first_slot(client: AuthenticatedClient, jurisdiction: str) -> BookingOut:
    page = therapists_list.sync(client=client, jurisdiction=jurisdiction, page_size=10)
    if not isinstance(page, PaginatedDirectoryItemOutList) or not page.results:
        raise RuntimeError("no therapist")
    therapist = page.results[0]
    session_type_id: uuid.UUID = therapist.session_types[0].id
    minutes: int = therapist.session_types[0].duration_minutes
    next_page: str | None | Unset = page.next_
    del next_page
    start = datetime.datetime.now(datetime.UTC)
    slots = therapists_slots_retrieve.sync(
        therapist.id,
        client=client,
        session_type=session_type_id,
        start=start,
        end=start + datetime.timedelta(days=14),
        tz=therapist.time_zone,
    )
    if not isinstance(slots, SlotsOut) or not slots.slots:
        raise RuntimeError("no slot")
    first: datetime.datetime = slots.slots[0].start
    assert slots.slots[0].end - first == datetime.timedelta(minutes=minutes)
    booking = bookings_create.sync(
        client=client,
        body=BookingInRequest(
            therapist=therapist.id,
            session_type=session_type_id,
            start=first,
            jurisdiction=jurisdiction,
        ),
        idempotency_key=str(uuid.uuid4()),
    )
    if not isinstance(booking, BookingOut):
        raise RuntimeError(f"not booked: {booking}")
    booked_id: uuid.UUID = booking.id
    booked_start: datetime.datetime = booking.start
    del booked_id, booked_start
    return booking


if __name__ == "__main__":
    book_first_slot(sign_in("http://127.0.0.1:8000", "client1@example.test", "x"), "US-CA")
'''


# Its own configuration: the project's (Django plugin, its packages) does not apply here. One
# exception, not about the document: the generator's fixed client.py template forwards
# ``__exit__(*args: Any)`` to httpx, which mypy 1.19 refuses as arg-type; every generated client
# has it, whatever the document says, so only that module skips that one code.
MYPY_INI = """\
[mypy]
strict = True

[mypy-telehealth_client.client]
disable_error_code = arg-type
"""


def run(args: list[str], cwd: Path, timeout: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        # The venv's bin first: the generator formats its output with ruff when ruff is there.
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_a_generated_client_type_checks_a_booking_journey_under_mypy_strict(tmp_path):
    generated = run(
        [str(BIN / "openapi-python-client"), "generate", "--path", str(ROOT / "openapi.yaml")]
        + ["--output-path", str(tmp_path / PACKAGE), "--meta", "none"],
        cwd=tmp_path,
        timeout=300,
    )
    assert generated.returncode == 0, generated.stdout[-6000:] + generated.stderr[-3000:]
    assert "Error(s) encountered" not in generated.stdout, generated.stdout[-6000:]
    assert (tmp_path / PACKAGE / "api" / "bookings" / "bookings_create.py").is_file()

    (tmp_path / "journey.py").write_text(textwrap.dedent(JOURNEY), encoding="utf-8")
    (tmp_path / "mypy.ini").write_text(MYPY_INI, encoding="utf-8")
    checked = run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--strict"]
        + ["--cache-dir", str(tmp_path / ".mypy_cache"), "journey.py"],
        cwd=tmp_path,
        timeout=300,
    )
    assert checked.returncode == 0, checked.stdout[-6000:] + checked.stderr[-3000:]
