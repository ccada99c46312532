"""Waking a backgrounded mobile app (video/wake.py, docs/video.md "Mobile apps"): the operator's
hook gets a ``Wake`` once the admission (or the therapist's arrival with clients waiting)
commits, carrying ids and what happened, nothing a lock screen should not show."""

from __future__ import annotations

from typing import Any

import pytest

from tests.video.signalling_support import (
    Setup,
    hello,
    in_call,
    make_room,
    opened,
    receive,
    run_async,
)
from video.wake import Wake

pytestmark = pytest.mark.django_db(transaction=True)

WOKEN: list[Wake] = []


def record(wake: Wake) -> None:
    """The hook under test (VIDEO_WAKE_HOOK = this function's dotted path)."""
    WOKEN.append(wake)


@pytest.fixture(autouse=True)
def _hook(settings: Any, fixed_clock: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.VIDEO_WAKE_HOOK = f"{__name__}.record"
    WOKEN.clear()


@pytest.fixture
def setup(db: None) -> Setup:
    return make_room()


@run_async
async def test_an_admitted_client_is_woken(setup: Setup) -> None:
    therapist, client, _ = await in_call(setup)
    assert WOKEN == [Wake(str(setup.client.user.pk), str(setup.room.pk), "admitted")]
    assert setup.client.user.full_name not in repr(WOKEN)
    await therapist.disconnect()
    await client.disconnect()


@run_async
async def test_a_waiting_client_is_woken_when_the_therapist_arrives(setup: Setup) -> None:
    client = await opened(setup.room.pk)
    await hello(client, await setup.client.atoken())
    await receive(client, "waiting")
    assert WOKEN == []
    therapist = await opened(setup.room.pk)
    await hello(therapist, await setup.therapist.atoken())
    assert (await receive(client, "waiting"))["therapist"] == "ready"
    assert WOKEN == [Wake(str(setup.client.user.pk), str(setup.room.pk), "therapist_ready")]
    await therapist.disconnect()
    await client.disconnect()


@run_async
async def test_no_hook_no_task(setup: Setup, settings: Any) -> None:
    settings.VIDEO_WAKE_HOOK = ""
    therapist, client, _ = await in_call(setup)
    assert WOKEN == []
    await therapist.disconnect()
    await client.disconnect()
