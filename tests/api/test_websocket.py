"""api/websocket.py: which pages may open the API's sockets (through api.asgi.application)."""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from api.asgi import application
from api.settings import LOCAL_ORIGINS

PATH = f"/ws/video/{uuid.uuid4()}/"
# Channels closes stale database connections on every event a consumer handles: outside a
# transaction of the test's own, as a live server would.
pytestmark = pytest.mark.django_db(transaction=True)


async def _accepted(headers: list[tuple[bytes, bytes]]) -> bool:
    communicator = WebsocketCommunicator(application, PATH, headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    await communicator.disconnect()
    return bool(connected)


def accepted(*headers: tuple[bytes, bytes]) -> bool:
    return async_to_sync(_accepted)(list(headers))


@pytest.fixture(autouse=True)
def _origins(settings) -> None:
    # Each check runs on a loop of its own: not channels_redis, whose locks belong to the first
    # loop that used them.
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.ALLOWED_HOSTS = ["api.telehealth.test"]
    settings.CORS_ALLOWED_ORIGINS = ["https://app.telehealth.test"]
    settings.CORS_ALLOWED_ORIGIN_REGEXES = []


def test_a_native_app_without_an_origin_may_connect() -> None:
    assert accepted()


@pytest.mark.parametrize("origin", [b"https://api.telehealth.test", b"https://app.telehealth.test"])
def test_the_api_host_and_configured_web_apps_may_connect(origin: bytes) -> None:
    assert accepted((b"origin", origin))


@pytest.mark.parametrize(
    "origin", [b"https://evil.example", b"http://app.telehealth.test", b"null", b"https://x"]
)
def test_any_other_page_is_refused(origin: bytes) -> None:
    assert not accepted((b"origin", origin))


@pytest.mark.parametrize(
    ("origin", "ok"),
    [
        (b"http://localhost:3000", True),
        (b"http://127.0.0.1:5173", True),
        (b"http://localhost", True),
        (b"https://localhost:3000", False),
        (b"http://localhost.evil.example:3000", False),
        (b"http://127.0.0.1.nip.io", False),
    ],
)
def test_in_development_local_web_clients_may_connect(settings, origin: bytes, ok: bool) -> None:
    settings.CORS_ALLOWED_ORIGIN_REGEXES = [LOCAL_ORIGINS]
    assert accepted((b"origin", origin)) is ok
