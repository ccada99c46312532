"""Calls that survive network changes (issue "Video II", item 3), with real aiortc peers and
two Chromium pages in the loopback-only namespace: the media path is cut by dropping every UDP
packet in the namespace (``iptables``; the signalling socket is TCP and stays up unless a test
drops it), then restored.

aiortc notices a dead path by ICE consent freshness; its defaults (a check every 5 s, failed
after 6 misses) are shortened here so that a failure is seen in about a second. A failed peer
connection asks the server for a new round (``restart`` with its round: the server makes one
new round when both sides ask); while the path is down each new round fails too and asks again,
at most once a second; once it is back, the next round connects.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from playwright.async_api import Page

from tests.video.browser_support import chromium, join, new_page, open_room, wait_media, wait_state
from tests.video.webrtc_support import (
    LiveApp,
    Server,
    api_get,
    close_all,
    run_async,
    start_call,
    udp_dropped,
)
from video.client import VideoClient

pytestmark = [pytest.mark.webrtc, pytest.mark.usefixtures("consent_checked_quickly")]

FRAMES = 30


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


# The page's one peer connection (the probe keeps every one it made): its round, whether it is
# still the first one made, its state and the video frames it decoded so far.
PAGE_CONNECTION = """() => {
  const call = window.__videoCall, s = window.__pcSummary;
  return {
    round: call.round, made: window.__pcs.length, first: call.pc === window.__pcs[0],
    state: call.pc && call.pc.connectionState, frames: s ? s.framesDecoded : 0,
  };
}"""


async def _page_connection(page: Page) -> dict[str, Any]:
    found: dict[str, Any] = await page.evaluate(PAGE_CONNECTION)
    return found


async def _media_spans(server: Server, booking: str, token: str) -> dict[str, int]:
    """How many media intervals each role has, as the attendance endpoint answers."""
    url = f"{server.base_url}/api/v1/video/rooms/{booking}/attendance"
    body = await asyncio.to_thread(api_get, url, token)
    return {p["role"]: len(p["media"]) for p in body["participants"]}


def test_two_pages_recover_by_restarting_ice_on_the_same_peer_connections(
    video_app: LiveApp, video_server: Server
) -> None:
    """Two Chromium pages in a call (both said ``ice_restart``); the media path dies under
    their live sockets. Their connections fail, a ``restart`` makes a new round that the server
    names an ICE restart, and the therapist's page offers with ``restartIce()`` on the peer
    connection it has. Once the path is back, media flows again on the same RTCPeerConnection
    each side (no new one made), and attendance shows the gap: each side's media interval
    closed when its connection failed and a second one opened when it came back."""
    call = video_app.claim()

    async def scenario() -> None:
        async with chromium() as browser:
            _, doctor, doctor_console = await new_page(browser)
            _, patient, patient_console = await new_page(browser)
            await open_room(doctor, video_server.base_url, call.booking, call.therapist_token)
            await join(doctor)
            await open_room(patient, video_server.base_url, call.booking, call.client_token)
            await join(patient, jurisdiction="US-NY")
            await wait_state(patient, "waiting")
            admit = doctor.locator("#waiting-list li button.admit")
            await admit.wait_for(state="visible")
            await admit.click()
            pages = (doctor, patient)
            for page in pages:
                await wait_media(page)
            first = await _page_connection(doctor)
            assert first["made"] == 1 and first["first"], first

            with udp_dropped():
                for page in pages:
                    await page.wait_for_function(
                        "first => window.__videoCall.round > first",
                        arg=first["round"],
                        timeout=90_000,
                    )
                stalled = {page: (await _page_connection(page))["frames"] for page in pages}

            for page in pages:
                await page.wait_for_function(
                    """stalled => {
                      const s = window.__pcSummary, call = window.__videoCall;
                      return s && call.pc.connectionState === "connected"
                        && s.framesDecoded > stalled + 30;
                    }""",
                    arg=stalled[page],
                    timeout=60_000,
                )
                after = await _page_connection(page)
                # The same RTCPeerConnection as before the failure: restarted, not replaced.
                assert (after["made"], after["first"]) == (1, True), after
                assert after["round"] > first["round"], after
            rounds = {(await _page_connection(page))["round"] for page in pages}
            assert len(rounds) == 1, rounds
            # Nothing refused but the second side's restart of a round already replaced.
            refused = [
                line
                for line in doctor_console + patient_console
                if ("video:" in line and "stale_round" not in line) or "pageerror" in line
            ]
            assert refused == [], refused

            loop = asyncio.get_running_loop()
            deadline = loop.time() + 15
            spans = await _media_spans(video_server, call.booking, call.therapist_token)
            while spans != {"therapist": 2, "client": 2} and loop.time() < deadline:
                await asyncio.sleep(0.1)  # the pages' last `connection` report on its way
                spans = await _media_spans(video_server, call.booking, call.therapist_token)
            assert spans == {"therapist": 2, "client": 2}, spans

    run_async(scenario(), timeout=240)
    assert video_server.peer_connections() == ""


def test_a_page_and_a_python_therapist_recover_on_new_peer_connections(
    video_app: LiveApp, video_server: Server
) -> None:
    """The same failure with the Python client (aiortc) as the therapist: it cannot restart
    ICE and says nothing of it in its hello, so the server names no round an ICE restart and
    the page builds a new peer connection for each new round (the aiortc peer's new DTLS
    certificate goes with it). Once the path is back, the last round connects and media flows
    both ways."""
    call = video_app.claim()

    async def scenario() -> None:
        therapist = VideoClient(name="therapist")
        await therapist.join(video_server.base_url, call.therapist_token, call.booking)
        await therapist.connect()
        try:
            async with chromium() as browser:
                _, page, console = await new_page(browser)
                await open_room(page, video_server.base_url, call.booking, call.client_token)
                await join(page, jurisdiction="US-NY")
                await wait_state(page, "waiting")
                [participant] = await therapist.waiting_participants(1)
                await therapist.admit(participant)
                await wait_media(page)
                await frames_flow(therapist)
                first = await _page_connection(page)
                assert first["made"] == 1, first
                since = len(therapist.messages)
                with udp_dropped():
                    await page.wait_for_function(
                        "first => window.__videoCall.round > first",
                        arg=first["round"],
                        timeout=60_000,
                    )
                await wait_media(page, timeout=60_000)  # the page's latest connection
                await frames_flow(therapist)
                after = await _page_connection(page)
                assert after["made"] > 1 and after["round"] == therapist.round, after
                rounds = [m for m in therapist.messages[since:] if m["type"] == "peer-joined"]
                assert rounds and not any(m["ice_restart"] for m in rounds), rounds
                refused = [
                    line for line in console if "video:" in line and "stale_round" not in line
                ]
                assert refused == [], refused
        finally:
            await therapist.close()

    run_async(scenario(), timeout=180)
