"""The running app against its own spec: schemathesis sends generated requests (valid and
invalid) to every operation in ``openapi.yaml`` and fails on any 5xx or on a response that does
not match the documented schema.

The app runs as it does in production, under uvicorn in its own process, on a free loopback
port, with a fresh migrated SQLite file holding the demo data (``seed_demo``), and one demo
therapist signed in with MFA, whose access token schemathesis sends, so authenticated
operations are exercised beyond their 401. The same server shows that the Swagger UI and Redoc
pages load with their scripts and styles (uvicorn serves no static files by itself).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# Operations that end the signed-in session run last, in their own pass.
SESSION_ENDING = r"^/api/v1/auth/logout"
MAX_EXAMPLES = 15
SIGN_IN_THERAPIST = """
from django.utils import timezone
from api.models import User
from api.services.sessions import session_start
user = User.objects.get(email="therapist1@example.test")
print(session_start(user=user, amr=["pwd", "otp", "mfa"], now=timezone.now()).access)
"""


@dataclass(frozen=True)
class LiveApp:
    base_url: str
    token: str
    log: Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def wait_until_healthy(server: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Poll /healthz until it answers; fail at once if the server exits, or after 60 tries."""
    for _ in range(60):
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        try:
            server.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"uvicorn exited with {server.returncode}:\n{log.read_text()[-3000:]}")
    pytest.fail(f"uvicorn did not become healthy:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def live_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    workdir = tmp_path_factory.mktemp("schemathesis")
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "api.settings",
        "DJANGO_DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "JWT_ACCESS_TTL_SECONDS": "3600",  # outlives the run
        "LOG_LEVEL": "WARNING",
        "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
        "CELERY_TASK_ALWAYS_EAGER": "1",  # no worker: after-commit emails are sent in-process
        "STRIPE_WEBHOOK_SECRET": "whsec_schemathesis_only",  # configured, as in production
    }
    manage(env, "migrate", "--no-input")
    manage(env, "seed_demo")
    token = manage(env, "shell", "--no-imports", "-c", SIGN_IN_THERAPIST).strip().splitlines()[-1]

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
        yield LiveApp(base_url=base_url, token=token, log=log)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def test_the_api_docs_load_with_their_scripts_and_styles(live_app):
    for page in ("/api/docs/", "/api/redoc/"):
        with urllib.request.urlopen(live_app.base_url + page, timeout=10) as response:  # noqa: S310
            html = response.read().decode()
        assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
        assert assets, page
        for asset in assets:
            with urllib.request.urlopen(live_app.base_url + asset, timeout=10) as response:  # noqa: S310
                assert response.status == 200, asset


def schemathesis(app: LiveApp, workdir: Path, *selection: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCHEMATHESIS), "run", str(ROOT / "openapi.yaml"), "--url", app.base_url]
        + ["--checks", "not_a_server_error,response_schema_conformance"]
        + ["--phases", "examples,coverage,fuzzing", "--max-examples", str(MAX_EXAMPLES)]
        # One worker: CPython 3.11.7 can fail building ASTs in two threads at once (gh-106905).
        + ["--seed", "20250101", "--generation-database", "none", "--workers", "1"]
        + ["--request-timeout", "20", "--no-color", "--suppress-health-check", "all"]
        + ["--header", f"Authorization: Bearer {app.token}", *selection],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def assert_passed(result: subprocess.CompletedProcess[str], app: LiveApp) -> None:
    assert result.returncode == 0, (
        f"schemathesis found failures:\n{result.stdout[-12000:]}\n{result.stderr[-2000:]}\n"
        f"--- server log ---\n{app.log.read_text()[-4000:]}"
    )


def test_no_server_errors_and_no_responses_outside_the_spec(live_app, tmp_path):
    everything_else = schemathesis(live_app, tmp_path, "--exclude-path-regex", SESSION_ENDING)
    assert_passed(everything_else, live_app)
    session_ending = schemathesis(live_app, tmp_path, "--include-path-regex", SESSION_ENDING)
    assert_passed(session_ending, live_app)
