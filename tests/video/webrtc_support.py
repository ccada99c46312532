"""Processes for the WebRTC tests: coturn, Redis and the app under uvicorn, all on 127.0.0.1 of
a loopback-only network namespace (tests/netns.py), and the database they share.

Every wait polls with a bound and fails with the process's log; nothing sleeps to wait.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.live import free_port, manage, run_python, wait_until_healthy
from video.client import VideoClient

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = Path(__file__).with_name("server_launcher.py")
TURN_REALM = "telehealth.test"
T = TypeVar("T")


def loopback_only() -> bool:
    """Whether this process sees no network interface but ``lo``."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def run_async(coro: Awaitable[T], *, timeout: float = 90) -> T:
    """Run a test's coroutine on a fresh event loop, bounded."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _poll(ready: Any, process: subprocess.Popen[bytes], log: Path, what: str) -> None:
    """Call ``ready()`` until it is true: at most 100 tries 0.1 s apart (the wait on the process
    is the pause); fail at once if the process exits."""
    for _ in range(100):
        if ready():
            return
        try:
            process.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            continue
        text = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        pytest.fail(f"{what} exited with {process.returncode}:\n{text}")
    text = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    pytest.fail(f"{what} did not come up:\n{text}")


# --- coturn -----------------------------------------------------------------------------------


def stun_binding_answered(port: int) -> bool:
    """A STUN Binding request to 127.0.0.1:port gets a Binding success response."""
    transaction = secrets.token_bytes(12)
    request = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + transaction
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        try:
            sock.sendto(request, ("127.0.0.1", port))
            data = sock.recv(2048)
        except OSError:
            return False
    return len(data) >= 20 and data[:2] == b"\x01\x01" and data[8:20] == transaction


@dataclass(frozen=True)
class Coturn:
    port: int
    secret: str
    log: Path

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    def wait_for_log(self, text: str, *, timeout: float = 5) -> bool:
        """Whether ``text`` shows up in coturn's log within ``timeout`` (it writes as it goes)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.log.exists() and text in self.log.read_text(errors="replace"):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)  # polling a file: nothing to wait on


@contextmanager
def run_coturn(workdir: Path) -> Iterator[Coturn]:
    port = free_port()
    secret = secrets.token_hex(16)
    log = workdir / "turnserver.log"
    config = workdir / "turnserver.conf"
    config.write_text(
        "\n".join(
            [
                "listening-ip=127.0.0.1",
                "relay-ip=127.0.0.1",
                f"listening-port={port}",
                "min-port=50000",
                "max-port=50999",
                "use-auth-secret",
                f"static-auth-secret={secret}",
                f"realm={TURN_REALM}",
                "fingerprint",
                "no-tls",
                "no-dtls",
                "no-cli",
                "no-tcp-relay",
                "no-multicast-peers",
                "allow-loopback-peers",  # the peers' relayed and host addresses are 127.0.0.1
                "no-software-attribute",
                f"userdb={workdir / 'turndb'}",
                f"pidfile={workdir / 'turnserver.pid'}",
                f"log-file={log}",
                "simple-log",
                "no-stdout-log",
                "verbose",
                "",
            ]
        )
    )
    process = subprocess.Popen(
        ["/usr/bin/turnserver", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _poll(lambda: stun_binding_answered(port), process, log, "turnserver")
        yield Coturn(port=port, secret=secret, log=log)
    finally:
        _stop(process)


# --- Redis ------------------------------------------------------------------------------------


@contextmanager
def run_redis(workdir: Path) -> Iterator[str]:
    """A throwaway redis-server on 127.0.0.1 inside the namespace; yields its URL."""
    import redis

    port = free_port()
    log = workdir / "redis.log"
    process = subprocess.Popen(
        ["/usr/bin/redis-server", "--bind", "127.0.0.1", "--port", str(port)]
        + ["--save", "", "--appendonly", "no", "--dir", str(workdir), "--logfile", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def answers() -> bool:
        try:
            return bool(redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    try:
        _poll(answers, process, log, "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(process)


# --- The database and the app -----------------------------------------------------------------


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@contextmanager
def live_database(workdir: Path) -> Iterator[str]:
    """A fresh database for the app servers: on PostgreSQL (DATABASE_URL, through the socket in
    the namespace) ``$TEST_DATABASE_NAME_live``, dropped afterwards; else an SQLite file."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        yield f"sqlite:///{workdir / 'db.sqlite3'}"
        return
    import psycopg

    name = (os.environ.get("TEST_DATABASE_NAME") or "test_telehealth_webrtc") + "_live"
    conninfo = _with_database(url, "postgres").replace("postgres://", "postgresql://", 1)

    def execute(statement: str) -> None:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(statement)

    execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(url, name)
    finally:
        execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Call:
    """A confirmed video booking whose room is open now, and its two parties' access tokens."""

    booking: str
    client_token: str
    therapist_token: str


@dataclass
class Server:
    base_url: str
    log: Path
    peer_log: Path
    process: subprocess.Popen[bytes]

    def peer_connections(self) -> str:
        """What the server process logged of RTCPeerConnections it made (empty: none)."""
        return self.peer_log.read_text() if self.peer_log.exists() else ""

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@dataclass
class LiveApp:
    """The migrated, seeded database, the environment to serve it, and the servers started."""

    workdir: Path
    env: dict[str, str]
    calls: list[Call]
    outsider_token: str
    coturn: Coturn
    servers: list[Server] = field(default_factory=list)
    started: int = 0  # processes started so far: each gets its own log files

    def claim(self) -> Call:
        """A booking no other test has used (each room is used by one test)."""
        if not self.calls:
            pytest.fail("out of seeded bookings: raise SEED_CALLS in tests/video/conftest.py")
        return self.calls.pop(0)

    def start_server(self, **extra_env: str) -> Server:
        port = free_port()
        self.started += 1
        n = self.started
        log = self.workdir / f"uvicorn-{n}.log"
        peer_log = self.workdir / f"peer-connections-{n}.log"
        env = {**self.env, "PEER_CONNECTION_LOG": str(peer_log), **extra_env}
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, str(LAUNCHER), "serve", "--port", str(port)],
                cwd=ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        server = Server(f"http://127.0.0.1:{port}", log, peer_log, process)
        self.servers.append(server)
        wait_until_healthy(process, f"{server.base_url}/healthz", log)
        return server

    def stop_server(self, server: Server) -> None:
        _stop(server.process)
        self.servers.remove(server)

    def start_media_worker(self, **extra_env: str) -> Server:
        """``manage.py run_media_worker`` (pre-call echo peers), up once it says so; stopped
        with the servers. Its ``base_url`` is empty: it serves no HTTP."""
        self.started += 1
        n = self.started
        log = self.workdir / f"media-worker-{n}.log"
        peer_log = self.workdir / f"peer-connections-{n}.log"
        env = {**self.env, "PEER_CONNECTION_LOG": str(peer_log), **extra_env}
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-u", str(LAUNCHER), "media-worker"],
                cwd=ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        worker = Server("", log, peer_log, process)
        self.servers.append(worker)
        _poll(lambda: "media worker: up" in worker.log_tail(), process, log, "run_media_worker")
        return worker

    def stop_all(self) -> None:
        for server in list(self.servers):
            self.stop_server(server)


def app_env(database_url: str, coturn: Coturn) -> dict[str, str]:
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "api.settings",
        "DJANGO_DEBUG": "1",
        "DATABASE_URL": database_url,
        "JWT_ACCESS_TTL_SECONDS": "3600",  # outlives the run
        "LOG_LEVEL": "WARNING",
        "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
        "CELERY_TASK_ALWAYS_EAGER": "1",  # no worker: after-commit emails are sent in-process
        "VIDEO_TURN_URLS": coturn.url,
        "VIDEO_TURN_SECRET": coturn.secret,
        "PYTHONPATH": str(ROOT),
    }
    for name in ("DATABASE_PREPARED_STATEMENTS", "CI"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


@contextmanager
def live_app(workdir: Path, coturn: Coturn, *, calls: int) -> Iterator[LiveApp]:
    with live_database(workdir) as database_url:
        env = app_env(database_url, coturn)
        manage(env, "migrate", "--no-input")
        seeded = run_python(env, str(LAUNCHER), "seed", "--calls", str(calls))
        data = json.loads(seeded.strip().splitlines()[-1])
        app = LiveApp(
            workdir=workdir,
            env=env,
            calls=[Call(**c) for c in data["calls"]],
            outsider_token=data["outsider_token"],
            coturn=coturn,
        )
        try:
            yield app
        finally:
            app.stop_all()


def api_get(url: str, token: str) -> Any:
    """GET ``url`` on the live app with a bearer token; the JSON body."""
    request = urllib.request.Request(  # noqa: S310 - the live app on loopback
        url, headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def expired_turn_credential(secret: str) -> tuple[str, str]:
    """A TURN REST credential minted as the server mints them, whose expiry passed a minute ago."""
    from video.turn import turn_password, turn_username

    username = turn_username(expires_at=datetime.now(UTC) - timedelta(minutes=1))
    return username, turn_password(secret=secret, username=username)


# --- Calls ------------------------------------------------------------------------------------


async def start_call(
    call: Call,
    *,
    therapist: VideoClient,
    client: VideoClient,
    therapist_api: str,
    client_api: str,
) -> None:
    """The therapist comes in, the client waits and is admitted; both get ``peer-joined``."""
    await therapist.join(therapist_api, call.therapist_token, call.booking)
    joined = await therapist.connect()
    assert joined["role"] == "therapist", joined
    await client.join(client_api, call.client_token, call.booking, jurisdiction="US-NY")
    joined = await client.connect()
    assert (joined["role"], joined["state"]) == ("client", "waiting"), joined
    assert client.participant_id in await therapist.waiting_participants(1)
    assert client.participant_id is not None
    await therapist.admit(client.participant_id)
    await asyncio.gather(therapist.wait_until_in_call(), client.wait_until_in_call())


async def close_all(*clients: VideoClient) -> None:
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


DROP_UDP = ["INPUT", "-p", "udp", "-j", "DROP"]


def _iptables(*args: str) -> None:
    binary = shutil.which("iptables")
    if binary is None:
        pytest.fail("iptables is needed to cut the media path (Debian package iptables)")
    subprocess.run([binary, *args], check=True, capture_output=True, timeout=10)


@contextmanager
def udp_dropped() -> Iterator[None]:
    """Every UDP packet in this namespace dropped (media, STUN, TURN), until the block ends."""
    _iptables("-I", *DROP_UDP)
    try:
        yield
    finally:
        _iptables("-D", *DROP_UDP)
