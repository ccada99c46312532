"""The app in real processes for the messaging tests and bench: uvicorn web processes sharing a
fresh database and Redis (the channel layer between them), seeded with conversations.

Every wait polls with a bound and fails with the process's log; nothing sleeps to wait.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.live import free_port, manage, run_python, wait_until_healthy
from tests.video.webrtc_support import live_database

ROOT = Path(__file__).resolve().parents[2]
SERVE = ROOT / "tests" / "video" / "server_launcher.py"  # uvicorn on 127.0.0.1:<port>
SEED = Path(__file__).with_name("live_launcher.py")


@dataclass
class Pair:
    conversation: str
    client: str
    therapist: str
    client_token: str
    therapist_token: str


@dataclass
class Web:
    base_url: str
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/ws/messages/"


@dataclass
class LiveMessaging:
    workdir: Path
    env: dict[str, str]
    pairs: list[Pair]
    servers: list[Web] = field(default_factory=list)

    def start_server(self, **extra_env: str) -> Web:
        port = free_port()
        log = self.workdir / f"uvicorn-{len(self.servers) + 1}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, str(SERVE), "serve", "--port", str(port)],
                cwd=ROOT,
                env={**self.env, **extra_env},
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        web = Web(f"http://127.0.0.1:{port}", log, process)
        self.servers.append(web)
        wait_until_healthy(process, f"{web.base_url}/healthz", log)
        return web

    def stop_all(self) -> None:
        for web in self.servers:
            web.process.terminate()
            try:
                web.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                web.process.kill()
                web.process.wait(timeout=10)
        self.servers = []


def live_env(database_url: str, redis_url: str, workdir: Path) -> dict[str, str]:
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "api.settings",
        "DJANGO_DEBUG": "1",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "JWT_ACCESS_TTL_SECONDS": "3600",  # outlives the run
        "LOG_LEVEL": "WARNING",
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "CELERY_TASK_ALWAYS_EAGER": "1",
        "MESSAGING_ATTACHMENTS_DIR": str(workdir / "attachments"),
        "PYTHONPATH": str(ROOT),
    }
    for name in ("DATABASE_POOL", "DATABASE_PREPARED_STATEMENTS", "TEST_DATABASE_NAME", "CI"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


@contextmanager
def live_messaging(
    workdir: Path, *, redis_url: str, pairs: int, messages: int = 0
) -> Iterator[LiveMessaging]:
    """A migrated database seeded with ``pairs`` conversations; servers are started per need.

    On PostgreSQL the database is ``test_<DATABASE_URL's name>_live`` (TEST_DATABASE_NAME wins),
    so two people sharing a server, each with their own database, never share this one."""
    url = os.environ.get("DATABASE_URL", "")
    own = os.environ.get("TEST_DATABASE_NAME") or "test_" + (urlsplit(url).path.strip("/") or "x")
    previous = os.environ.get("TEST_DATABASE_NAME")
    os.environ["TEST_DATABASE_NAME"] = own
    try:
        with _live(workdir, redis_url=redis_url, pairs=pairs, messages=messages) as app:
            yield app
    finally:
        if previous is None:
            os.environ.pop("TEST_DATABASE_NAME", None)
        else:
            os.environ["TEST_DATABASE_NAME"] = previous


@contextmanager
def _live(workdir: Path, *, redis_url: str, pairs: int, messages: int) -> Iterator[LiveMessaging]:
    with live_database(workdir) as database_url:
        env = live_env(database_url, redis_url, workdir)
        manage(env, "migrate", "--no-input")
        seeded = run_python(
            env,
            str(SEED),
            "seed",
            "--pairs",
            str(pairs),
            "--messages",
            str(messages),
            timeout=1800,
        )
        data: dict[str, Any] = json.loads(seeded.strip().splitlines()[-1])
        app = LiveMessaging(workdir, env, [Pair(**p) for p in data["pairs"]])
        try:
            yield app
        finally:
            app.stop_all()
