"""Helpers for tests that run the app as real processes on loopback: a free port, a
``manage.py`` command, and waiting for a started server's ``/healthz``."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_python(env: dict[str, str], *args: str, timeout: float = 180) -> str:
    """``python *args`` from the project's root in ``env``; its output, or the test fails with
    its errors."""
    result = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def manage(env: dict[str, str], *args: str) -> str:
    """``python manage.py *args`` (``run_python``)."""
    return run_python(env, "manage.py", *args)


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
