#!/usr/bin/env python3
"""Run a command in a fresh network namespace that has only loopback.

    python tests/netns.py .venv/bin/python -m pytest -m webrtc -p no:xdist tests/video

The WebRTC tests (``@pytest.mark.webrtc``) run real peers, a real coturn and real app servers;
in a namespace whose only interface is ``lo`` no packet of theirs can reach another machine and
every ICE candidate is 127.0.0.1 (the tests make aioice offer it: it leaves loopback out).

``unshare --net`` as root (``--map-root-user`` otherwise), ``ip link set lo up``, then the
command. The host's TCP services are out of reach in there, so the environment is adjusted:
a ``DATABASE_URL`` naming PostgreSQL on 127.0.0.1/localhost goes through its Unix socket
(``NETNS_PG_SOCKET``, default /var/run/postgresql), ``TEST_DATABASE_NAME`` becomes
``test_<db>_webrtc`` (never the main run's) and ``REDIS_URL`` is dropped (a test that needs Redis
starts its own, inside). When the namespace cannot be made the run fails under ``CI=true``;
elsewhere it says so and exits 0 (the main suite has deselected these tests).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from urllib.parse import quote, urlsplit, urlunsplit

INSIDE = "--inside"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
PGSOCKET = os.environ.get("NETNS_PG_SOCKET", "/var/run/postgresql")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def socket_database_url(url: str) -> str:
    """A PostgreSQL URL on a loopback host, rewritten to the Unix socket (user, password, port
    and database kept: the port names the socket file)."""
    parts = urlsplit(url)
    if not parts.scheme.startswith("postgres") or parts.hostname not in LOOPBACK_HOSTS:
        return url
    credentials = parts.netloc.rpartition("@")[0]
    host = quote(PGSOCKET, safe="")
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{credentials}@{host}{port}" if credentials else f"{host}{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def namespace_env(environ: dict[str, str]) -> dict[str, str]:
    env = dict(environ)
    url = env.get("DATABASE_URL", "")
    if url:
        env["DATABASE_URL"] = socket_database_url(url)
        name = urlsplit(url).path.lstrip("/") or "telehealth"
        env["TEST_DATABASE_NAME"] = f"test_{name}_webrtc"
    else:
        env.pop("TEST_DATABASE_NAME", None)
    env.pop("REDIS_URL", None)
    env["WEBRTC_NETNS"] = "1"
    return env


def interfaces() -> list[str]:
    """The network interfaces of this process's namespace (not /sys/class/net: that is the
    namespace sysfs was mounted in)."""
    return sorted(name for _, name in socket.if_nameindex())


def loopback_only() -> bool:
    return interfaces() == ["lo"]


def _fail(message: str) -> int:
    if in_ci():
        sys.stderr.write(f"netns: {message} (required in CI)\n")
        return 1
    sys.stderr.write(f"netns: {message}; the WebRTC tests did not run\n")
    return 0


def outside(command: list[str]) -> int:
    unshare = shutil.which("unshare")
    if unshare is None:
        return _fail("no unshare(1) on PATH")
    flags = ["--net"] if os.geteuid() == 0 else ["--net", "--map-root-user"]
    probe = subprocess.run([unshare, *flags, "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return _fail(f"cannot create a network namespace: {probe.stderr.strip()}")
    argv = [unshare, *flags, "--", sys.executable, os.path.abspath(__file__), INSIDE, *command]
    return subprocess.call(argv, env=namespace_env(dict(os.environ)))


def inside(command: list[str]) -> int:
    ip = shutil.which("ip") or "/usr/sbin/ip"
    subprocess.run([ip, "link", "set", "lo", "up"], check=True)
    if not loopback_only():
        sys.stderr.write(f"netns: not loopback-only: {interfaces()}\n")
        return 1
    os.execvp(command[0], command)  # noqa: S606 - the caller's command


def main(argv: list[str]) -> int:
    if argv and argv[0] == INSIDE:
        return inside(argv[1:])
    if not argv:
        sys.stderr.write(__doc__ or "")
        return 2
    return outside(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
