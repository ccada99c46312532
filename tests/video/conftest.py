"""Video fixtures. Tests marked ``webrtc`` run real peers (video.client.VideoClient), a real
coturn and the app under uvicorn, and only in a loopback-only network namespace: ``make
test-webrtc`` (tests/netns.py). Anywhere else they are deselected (not skipped): the main run
does not see them.

In the namespace aioice is told that 127.0.0.1 is the host address (it leaves loopback out of
its candidates) and answers STUN retransmissions sooner, as aiortc's own tests do.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.video.webrtc_support import (
    Coturn,
    LiveApp,
    Server,
    live_app,
    loopback_only,
    run_coturn,
)

# Bookings seeded for the session: each test that calls takes its own room.
SEED_CALLS = 60


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if loopback_only():
        return
    deselected = [item for item in items if item.get_closest_marker("webrtc")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("webrtc")]


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("webrtc") and not loopback_only():
        pytest.fail("webrtc tests run only in a loopback-only namespace: make test-webrtc")


@pytest.fixture(autouse=True)
def _loopback_ice(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("webrtc") is None:
        return
    import aioice.ice
    import aioice.stun

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    monkeypatch.setattr(aioice.stun, "RETRY_MAX", 2)
    monkeypatch.setattr(aioice.stun, "RETRY_RTO", 0.1)


@pytest.fixture
def consent_checked_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice checks a pair's consent every 0.2 s and gives up after 3 misses (default 5 s
    and 6): a cut media path is found lost in about a second (the recovery tests)."""
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.2)
    monkeypatch.setattr(aioice.ice, "CONSENT_FAILURES", 3)


@pytest.fixture(scope="session")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    with run_coturn(tmp_path_factory.mktemp("coturn")) as server:
        yield server


@pytest.fixture(scope="session")
def video_app(tmp_path_factory: pytest.TempPathFactory, coturn: Coturn) -> Iterator[LiveApp]:
    """The migrated database with its seeded bookings; servers are started per need."""
    with live_app(tmp_path_factory.mktemp("live"), coturn, calls=SEED_CALLS) as app:
        yield app


@pytest.fixture(scope="session")
def video_server(video_app: LiveApp) -> Iterator[Server]:
    """One app server (in-memory channel layer) for the session."""
    server = video_app.start_server()
    try:
        yield server
    finally:
        video_app.stop_server(server)
