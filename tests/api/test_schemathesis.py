"""The running app against its own spec (API-04): schemathesis sends generated requests, valid
and invalid, to every operation in ``openapi.yaml`` with every check it has, as each kind of
caller, and fails on any finding: a 5xx, a status, header, content type or body the document
does not declare, an invalid request accepted, a valid one refused, an operation that ignores
the token, a resource still there after it was deleted...

The app runs as it does in production, under uvicorn in its own process on a free loopback
port, over a migrated SQLite file holding the demo data (``seed_demo``). Each identity gets its
own copy of that file and its own server, so no run sees another's writes and the outcome does
not depend on which xdist worker runs which identity: anonymous, a client, and a therapist and
a compliance officer signed in with MFA, whose access tokens schemathesis sends. Generation is
deterministic (derandomized, no example database). Operations that end the session (logout)
run last, in their own pass.

A valid request refused (``positive_data_acceptance``) is checked on every operation, except
where no schema can say what the server needs: those operations are named in
``NO_POSITIVE_DATA_ACCEPTANCE`` with the reason, for every identity or for one. The same server
shows that the Swagger UI and Redoc pages load with their scripts and styles (uvicorn serves no
static files by itself).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.live import free_port, manage, wait_until_healthy

ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# Operations that end the signed-in session run last, in their own pass.
SESSION_ENDING = r"^/api/v1/auth/logout"
# Per operation and phase; with four identities the test takes a few minutes on two cores.
MAX_EXAMPLES = 10
# Demo accounts (api/management/commands/seed_demo.py) by identity, with the factors they
# signed in with: staff complete MFA, a client signs in with a password.
SIGNED_IN = {
    "client": ("client1@example.test", ["pwd"]),
    "therapist": ("therapist1@example.test", ["pwd", "otp", "mfa"]),
    "compliance_officer": ("compliance@example.test", ["pwd", "otp", "mfa"]),
}
IDENTITIES = ("anonymous", *SIGNED_IN)
SIGN_IN = """
import json
from django.utils import timezone
from api.models import User
from api.services.sessions import session_start
people = json.loads({people!r})
tokens = {{
    identity: session_start(
        user=User.objects.get(email=email), amr=amr, now=timezone.now()
    ).access
    for identity, (email, amr) in people.items()
}}
print(json.dumps(tokens))
"""

# A valid request must be accepted (2xx, 3xx, or a refusal that depends on the caller or on
# the data: 401, 403, 404, 409, 422, 429). 422 is in that list because this API answers it to
# a well-formed request it will not carry out (docs/conventions.md): a late fee over 100 %, or
# an Idempotency-Key already used with another body, as generated keys are.
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "422", "429"]

# Operations where a request the schema allows can still be invalid, because what the server
# needs cannot be stated in JSON Schema: the check stays on everywhere else.
NO_POSITIVE_DATA_ACCEPTANCE: dict[str, str] = {
    # Values that depend on the server's state or secrets.
    "auth_password_reset_confirm": "a token from a reset email",
    "billing_stripe_webhook": "a signature made with the server's webhook secret",
    "me_password": "the caller's current password",
    "video_precall_start": "seconds at most VIDEO_PRECALL_MAX_SECONDS, a setting",
    # Rules no JSON Schema states: a relation between two fields, a checksum, a list of names
    # kept outside the document.
    "auth_register": "the password policy (common passwords, likeness to the email)",
    "audit_events_list": "until must be after since",
    "audit_export": "until must be after since",
    "audit_export_csv": "until must be after since",
    "audit_export_fhir": "until must be after since",
    "audit_export_fhir_manifest": "until must be after since",
    "audit_export_jsonl": "until must be after since",
    "billing_provider_set": "an NPI's Luhn check digit",
    "therapists_list": "available_to must be after available_from",
    "therapists_slots_retrieve": "end after start, at most a few weeks on; tz an IANA zone",
    "therapists_me_schedule_retrieve": "end after start; tz an IANA zone",
    "therapists_me_profile_create": "time_zone an IANA zone of the server's tz database",
    "therapists_me_profile_partial_update": "time_zone an IANA zone of the server's tz database",
    "messaging_profile_update": "time_zone an IANA zone of the server's tz database",
    "therapists_me_availability_rules_update": "each window's end after its start",
    "therapists_me_availability_overrides_create": "the fields a kind takes; end after start",
    "therapists_me_calendars_create": "url or ics, as the source says",
    "video_precall_offer": "an SDP offer with a media section",
    "conversations_messages_with_file_create": "a PDF, PNG, JPEG or text file, by its bytes",
}
# The same, for one identity only.
NO_POSITIVE_DATA_ACCEPTANCE_AS: dict[str, dict[str, str]] = {
    "client": {
        # a client must say where they are now; a therapist may omit it (the schema has one
        # body for both, and says so in the field's description)
        "video_room_join": "jurisdiction is required for a client only",
    },
}


def all_checks() -> list[str]:
    """Every check the installed schemathesis has (what ``--checks all`` names)."""
    from schemathesis.checks import CHECKS, load_all_checks

    load_all_checks()
    return sorted(CHECKS.get_all_names())


def schemathesis_config(identity: str) -> str:
    """The run's ``schemathesis.toml``: every check on, what counts as accepted, how strings
    are generated (JSON in UTF-8 without NUL, which the parser refuses with 400 by design:
    GEN-02), and the exclusions above.

    The checks are turned on here, not with ``--checks all``: an option on the command line
    would override an operation's exclusion."""
    excluded = NO_POSITIVE_DATA_ACCEPTANCE | NO_POSITIVE_DATA_ACCEPTANCE_AS.get(identity, {})
    lines = ["[generation]", "allow-x00 = false", 'codec = "utf-8"']
    for check in all_checks():
        lines += ["", f"[checks.{check}]", "enabled = true"]
        if check == "positive_data_acceptance":
            lines.append(f"expected-statuses = {json.dumps(ACCEPTED)}")
    for operation_id, reason in sorted(excluded.items()):
        lines += [
            "",
            f"# {reason}",
            "[[operations]]",
            f"include-operation-id = {json.dumps(operation_id)}",
            "checks.positive_data_acceptance.enabled = false",
        ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Seeded:
    """A migrated SQLite file with the demo data, and an access token per signed-in identity."""

    env: dict[str, str]
    database: Path
    tokens: dict[str, str]


@dataclass(frozen=True)
class LiveApp:
    base_url: str
    log: Path


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    workdir = tmp_path_factory.mktemp("seeded")
    database = workdir / "db.sqlite3"
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "api.settings",
        "DJANGO_DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{database}",
        "JWT_ACCESS_TTL_SECONDS": "3600",  # outlives the run
        "LOG_LEVEL": "WARNING",
        "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
        "CELERY_TASK_ALWAYS_EAGER": "1",  # no worker: after-commit emails are sent in-process
        "STRIPE_WEBHOOK_SECRET": "whsec_schemathesis_only",  # configured, as in production
    }
    manage(env, "migrate", "--no-input")
    manage(env, "seed_demo")
    script = SIGN_IN.format(people=json.dumps(SIGNED_IN))
    out = manage(env, "shell", "--no-imports", "-c", script)
    return Seeded(env=env, database=database, tokens=json.loads(out.strip().splitlines()[-1]))


@contextmanager
def serving(seeded: Seeded, workdir: Path) -> Iterator[LiveApp]:
    """uvicorn over a copy of the seeded database, stopped on exit."""
    database = workdir / "db.sqlite3"
    with closing(sqlite3.connect(seeded.database)) as source:
        with closing(sqlite3.connect(database)) as target:
            source.backup(target)  # whole, whatever is still in the write-ahead log
    env = seeded.env | {"DATABASE_URL": f"sqlite:///{database}"}
    port = free_port()
    log = workdir / "uvicorn.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.asgi:application"]
            + ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_healthy(server, f"{base_url}/healthz", log)
        yield LiveApp(base_url=base_url, log=log)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def test_the_api_docs_load_with_their_scripts_and_styles(seeded, tmp_path):
    with serving(seeded, tmp_path) as app:
        for page in ("/api/docs/", "/api/redoc/"):
            with urllib.request.urlopen(app.base_url + page, timeout=10) as response:  # noqa: S310
                html = response.read().decode()
            assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
            assert assets, page
            for asset in assets:
                with urllib.request.urlopen(app.base_url + asset, timeout=10) as response:  # noqa: S310
                    assert response.status == 200, asset


def schemathesis(
    app: LiveApp, workdir: Path, config: Path, token: str | None, *selection: str
) -> subprocess.CompletedProcess[str]:
    auth = ["--header", f"Authorization: Bearer {token}"] if token else []
    return subprocess.run(
        [str(SCHEMATHESIS), "--config-file", str(config), "run", str(ROOT / "openapi.yaml")]
        + ["--url", app.base_url, "--mode", "all"]
        + ["--phases", "examples,coverage,fuzzing", "--max-examples", str(MAX_EXAMPLES)]
        # One worker: CPython 3.11.7 can fail building ASTs in two threads at once (gh-106905).
        + ["--generation-deterministic", "--workers", "1"]
        + ["--request-timeout", "20", "--no-color", "--suppress-health-check", "all"]
        + auth
        + list(selection),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def assert_passed(result: subprocess.CompletedProcess[str], app: LiveApp) -> None:
    assert result.returncode == 0, (
        f"schemathesis found failures:\n{result.stdout[-20000:]}\n{result.stderr[-2000:]}\n"
        f"--- server log ---\n{app.log.read_text()[-4000:]}"
    )


@pytest.mark.parametrize("identity", IDENTITIES)
def test_api_04_every_check_passes_on_every_operation(seeded, tmp_path, identity):
    """API-04: all checks, valid and invalid requests, as this identity."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(schemathesis_config(identity))
    token = seeded.tokens.get(identity)
    with serving(seeded, tmp_path) as app:
        everything_else = schemathesis(
            app, tmp_path, config, token, "--exclude-path-regex", SESSION_ENDING
        )
        assert_passed(everything_else, app)
        session_ending = schemathesis(
            app, tmp_path, config, token, "--include-path-regex", SESSION_ENDING
        )
        assert_passed(session_ending, app)


def test_the_config_names_only_operations_of_the_document():
    """An exclusion cannot outlive its operation (a renamed id would silently match nothing)."""
    document = (ROOT / "openapi.yaml").read_text()
    operation_ids = set(re.findall(r"^\s+operationId: (\S+)$", document, flags=re.M))
    named = set(NO_POSITIVE_DATA_ACCEPTANCE)
    for per_identity in NO_POSITIVE_DATA_ACCEPTANCE_AS.values():
        named |= set(per_identity)
    assert named <= operation_ids, named - operation_ids
