"""Calls that survive network changes (issue "Video II", item 3), with real aiortc peers in the
loopback-only namespace: the media path is cut by dropping every UDP packet in the namespace
(``iptables``; the signalling socket is TCP and stays up unless a test drops it), then
restored.

aiortc notices a dead path by ICE consent freshness; its defaults (a check every 5 s, failed
after 6 misses) are shortened here so that a failure is seen in about a second. A failed peer
connection asks the server for a new round (``restart`` with its round: the server makes one
new round when both sides ask); while the path is down each new round fails too and asks again,
at most once a second; once it is back, the next round connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.video.webrtc_support import LiveApp, Server, close_all, run_async, start_call
from video.client import VideoClient

pytestmark = pytest.mark.webrtc

FRAMES = 30
DROP_UDP = ["INPUT", "-p", "udp", "-j", "DROP"]


@pytest.fixture(autouse=True)
def _consent_checked_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.2)
    monkeypatch.setattr(aioice.ice, "CONSENT_FAILURES", 3)


def _iptables(*args: str) -> None:
    binary = shutil.which("iptables")
    if binary is None:
        pytest.fail("iptables is needed to cut the media path (Debian package iptables)")
    subprocess.run([binary, *args], check=True, capture_output=True, timeout=10)


@contextlib.contextmanager
def udp_dropped() -> Iterator[None]:
    """Every UDP packet in this namespace dropped (media, STUN, TURN), until the block ends."""
    _iptables("-I", *DROP_UDP)
    try:
        yield
    finally:
        _iptables("-D", *DROP_UDP)


async def frames_flow(*peers: VideoClient) -> None:
    """Each peer decodes FRAMES more video and audio frames than it had, on a connected peer
    connection whose selected pair is on loopback."""
    targets = [(p, dict(p.frames_received)) for p in peers]
    await asyncio.gather(
        *(
            p.wait_for_frames(audio=seen["audio"] + FRAMES, video=seen["video"] + FRAMES)
            for p, seen in targets
        )
    )
    for peer in peers:
        assert peer.connection_state == "connected"
        pair = peer.selected_pair()
        assert pair is not None and pair.local_address[0] == "127.0.0.1", pair


def test_a_call_recovers_when_the_media_path_fails_and_comes_back(
    video_app: LiveApp, video_server: Server
) -> None:
    """Wi-Fi to cellular, seen from the peers: the media path dies under a live socket. Both
    sides see their peer connection fail and ask for a restart; the server makes new rounds;
    when the path is back, a new round connects and media flows again."""
    call = video_app.claim()

    async def scenario() -> None:
        therapist, client = VideoClient(name="therapist"), VideoClient(name="client")
        try:
            await start_call(
                call,
                therapist=therapist,
                client=client,
                therapist_api=video_server.base_url,
                client_api=video_server.base_url,
            )
            await frames_flow(therapist, client)
            first = therapist.round
            assert first is not None
            with udp_dropped():
                await therapist.wait_until(
                    lambda: (therapist.round or 0) > first and (client.round or 0) > first,
                    timeout=20,
                    what="a new round after the media path failed",
                )
            await frames_flow(therapist, client)
            assert therapist.round == client.round
            restarts = [m for m in client.messages + therapist.messages if m["type"] == "error"]
            assert all(m["code"] == "stale_round" for m in restarts), restarts
        finally:
            await close_all(therapist, client)

    run_async(scenario())


def test_a_client_whose_socket_and_media_dropped_comes_back_into_the_call(
    video_app: LiveApp, video_server: Server
) -> None:
    """A laptop that slept: the client's socket and its media path are both gone. The
    therapist is told the client is reconnecting (``peer-left``, ``disconnected``); the client
    comes back with its resume token, in the call without a new admission, and once the path
    is back the call runs again (``peer-joined``, a new round)."""
    call = video_app.claim()

    async def scenario() -> None:
        therapist, client = VideoClient(name="therapist"), VideoClient(name="client")
        try:
            await start_call(
                call,
                therapist=therapist,
                client=client,
                therapist_api=video_server.base_url,
                client_api=video_server.base_url,
            )
            await frames_flow(therapist, client)
            first = therapist.round
            assert first is not None
            since = len(therapist.messages)
            with udp_dropped():
                await client.drop()
                left = await therapist.wait_for("peer-left", since=since, timeout=15)
                assert (left["participant"], left["reason"]) == (
                    client.participant_id,
                    "disconnected",
                )
                joined = await client.connect()  # the resume token from the first hello
                assert joined["state"] == "in_call"
            back = await therapist.wait_for(
                "peer-joined", lambda m: m["round"] > first, since=since, timeout=15
            )
            assert back["peer"]["participant"] == client.participant_id
            await frames_flow(therapist, client)
        finally:
            await close_all(therapist, client)

    run_async(scenario())
