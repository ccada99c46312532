"""The reference page (``/video/{booking_id}/``) in headless Chromium against the live app.

Run in the loopback-only namespace only (``make test-webrtc``, tests/netns.py): the page joins
over REST, waits, is admitted and talks to a Python peer (video.client.VideoClient) or to a
second Chromium, and the assertions read the browser's own ``RTCPeerConnection.getStats()``
(tests/video/browser_support.py wraps the constructor before the page loads): DTLS connected,
an SRTP cipher, video frames decoded, the selected pair on 127.0.0.1. Refusals show their
message. Every wait is bounded; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from playwright.async_api import Page, Route

from tests.video.browser_support import (
    chromium,
    join,
    new_page,
    open_room,
    text,
    wait_media,
    wait_state,
)
from tests.video.webrtc_support import LiveApp, Server, api_get, run_async
from video.client import VideoClient

pytestmark = pytest.mark.webrtc

LOOPBACK = "127.0.0.1"
JURISDICTION = "US-NY"  # where the seeded therapists are licensed
DTLS_1_2_OR_LATER = {"FEFD", "FEFC"}  # getStats() tlsVersion: DTLS 1.2, DTLS 1.3


def _assert_encrypted_on_loopback(stats: dict, who: str) -> None:
    assert stats["dtlsState"] == "connected", (who, stats)
    # e.g. SRTP_AEAD_AES_256_GCM with aiortc, SRTP_AES128_CM_HMAC_SHA1_80 between browsers.
    assert stats["srtpCipher"], (who, stats)
    assert stats["tlsVersion"] in DTLS_1_2_OR_LATER, (who, stats)
    assert stats["framesDecoded"] > 0, (who, stats)
    assert stats["audioPacketsReceived"] > 0, (who, stats)
    assert stats["local"] is not None, (who, stats)
    # A host candidate on loopback, or coturn's relay (also on 127.0.0.1).
    assert stats["local"]["address"] == LOOPBACK, (who, stats)
    assert stats["remote"]["address"] == LOOPBACK, (who, stats)


async def _fail_with_console(page: Page, console: list[str], what: str) -> str:
    state = await page.evaluate("() => document.body.dataset.state")
    message = await text(page, "#message")
    status = await text(page, "#status")
    return f"{what}: state={state} message={message!r} status={status!r}\n" + "\n".join(
        console[-30:]
    )


async def _client_quality(server: Server, call: Any) -> dict[str, Any]:
    """The client's call-quality summary as the therapist reads it, once the page's report is
    stored (polled, bounded)."""
    url = f"{server.base_url}/api/v1/video/rooms/{call.booking}/quality"
    for _ in range(100):
        body = await asyncio.to_thread(api_get, url, call.therapist_token)
        summary = next(p["summary"] for p in body["participants"] if p["role"] == "client")
        if summary["samples"]:
            return dict(summary)
        await asyncio.sleep(0.05)
    raise AssertionError("the page's stats were not stored")


def test_a_client_page_waits_is_admitted_and_talks_to_a_python_therapist(
    video_server: Server, video_app: LiveApp
) -> None:
    call = video_app.claim()

    async def scenario() -> None:
        therapist = VideoClient(name="therapist")
        await therapist.join(video_server.base_url, call.therapist_token, call.booking)
        await therapist.connect()
        try:
            async with chromium() as browser:
                _, page, console = await new_page(browser)
                await open_room(page, video_server.base_url, call.booking, call.client_token)
                # The fragment was read, then dropped from the address bar.
                assert "#" not in page.url
                assert await page.input_value("#token") == call.client_token
                await join(page, jurisdiction=JURISDICTION)
                try:
                    await wait_state(page, "waiting")
                except Exception as exc:
                    raise AssertionError(
                        await _fail_with_console(page, console, "not waiting")
                    ) from exc
                # The waiting room shows the therapist's status (here already in the room).
                await page.wait_for_function(
                    "() => document.getElementById('therapist-status').textContent"
                    ".includes('is here')"
                )
                assert await page.is_visible("#waiting")
                # Nothing negotiates before admission.
                assert await page.evaluate("() => window.__pcs.length") == 0

                [participant] = await therapist.waiting_participants(1)
                await therapist.admit(participant)

                try:
                    stats = await wait_media(page)
                except Exception as exc:
                    raise AssertionError(
                        await _fail_with_console(page, console, "no media in the page")
                    ) from exc
                _assert_encrypted_on_loopback(stats, "client page")
                assert await page.evaluate("() => document.body.dataset.state") == "in-call"
                # Call quality: the page reports what its getStats() measured (no address).
                reported = await page.evaluate("() => window.__videoCall.reportStats()")
                assert reported["relay"] is False and reported["width"], reported
                assert not any("127.0.0.1" in str(v) for v in reported.values())
                assert (await _client_quality(video_server, call))["samples"] == 1
                # The Python therapist receives the page's fake camera too.
                await therapist.wait_for_frames(video=5, audio=5, timeout=30)
                assert therapist.dtls_state() == "connected"
                pair = therapist.selected_pair()
                assert pair is not None and pair.local_address[0] == LOOPBACK

                # Hang up: the page sends leave; the therapist sees the client leave.
                since = len(therapist.messages)
                await page.click("#hangup")
                left = await therapist.wait_for("peer-left", since=since, timeout=15)
                assert left["reason"] == "left"
                await wait_state(page, "ended")
        finally:
            await therapist.close()

    run_async(scenario(), timeout=120)
    # VID-09: the server took no part in the media.
    assert video_server.peer_connections() == ""


def test_two_chromium_pages_call_each_other_through_the_page_buttons(
    video_server: Server, video_app: LiveApp
) -> None:
    call = video_app.claim()

    async def scenario() -> None:
        async with chromium() as browser:
            _, doctor, doctor_console = await new_page(browser)
            _, patient, patient_console = await new_page(browser)

            await open_room(doctor, video_server.base_url, call.booking, call.therapist_token)
            # The location field is for clients: the therapist's page hides it.
            assert not await doctor.is_visible("#jurisdiction")
            await join(doctor)
            await doctor.wait_for_function(
                "() => document.getElementById('therapist').hidden === false"
            )

            await open_room(patient, video_server.base_url, call.booking, call.client_token)
            await join(patient, jurisdiction=JURISDICTION)
            await wait_state(patient, "waiting")

            # The therapist's waiting list shows the client; Admit lets them in.
            admit = doctor.locator("#waiting-list li button.admit")
            await admit.wait_for(state="visible")
            await admit.click()

            for page, console, who in (
                (patient, patient_console, "client page"),
                (doctor, doctor_console, "therapist page"),
            ):
                try:
                    stats = await wait_media(page)
                except Exception as exc:
                    raise AssertionError(
                        await _fail_with_console(page, console, f"no media in the {who}")
                    ) from exc
                _assert_encrypted_on_loopback(stats, who)

            # Mute on one side shows on the other (media → peer-media).
            await patient.click("#mute")
            await doctor.wait_for_function(
                "() => document.getElementById('peer-media').textContent.includes('muted')"
            )
            # The client hangs up; the therapist's page says so.
            await patient.click("#hangup")
            await doctor.wait_for_function(
                "() => document.getElementById('status').textContent.includes('left the call')"
            )

    run_async(scenario(), timeout=150)
    assert video_server.peer_connections() == ""


# The receiving page's video as its own getStats() reports it, by mid: frames decoded and the
# frame's width; what the page shows as the shared screen; its peer connections and round.
VIDEO_BY_MID = """async () => {
  const call = window.__videoCall;
  const pc = window.__pcs[window.__pcs.length - 1];
  const video = {};
  (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") {
      video[s.mid] = { frames: s.framesDecoded || 0, width: s.frameWidth || 0 };
    }
  });
  const screen = document.getElementById("shared-screen");
  const shown = screen.srcObject && screen.srcObject.getVideoTracks()[0];
  const shownMid = shown
    ? (pc.getTransceivers().find((t) => t.receiver.track === shown) || {}).mid : null;
  const transceiver = (mid) => pc.getTransceivers().find((t) => t.mid === mid);
  return {
    video, shownMid, playing: screen.videoWidth,
    labelled: !document.getElementById("shared").hidden
      && document.getElementById("shared-label").textContent,
    pcs: window.__pcs.length, round: call.round,
    current: Object.fromEntries(pc.getTransceivers().map((t) => [t.mid, t.currentDirection])),
    muted: Object.fromEntries(pc.getTransceivers().map((t) => [t.mid, t.receiver.track.muted])),
  };
}"""
SHARE_MID = "() => { const t = window.__videoCall.pc.shareTransceiver; return t && t.mid; }"


async def _video_by_mid(page: Page) -> dict[str, Any]:
    found: dict[str, Any] = await page.evaluate(VIDEO_BY_MID)
    return found


async def _until(page: Page, what: str, check: Any, timeout: float = 30) -> dict[str, Any]:
    """Poll the receiving page's video stats (every 200 ms, bounded) until ``check`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        seen = await _video_by_mid(page)
        if check(seen):
            return seen
        if loop.time() > deadline:
            raise AssertionError(f"{what}: {seen}")
        await asyncio.sleep(0.2)


def test_the_therapist_shares_a_screen_and_the_client_page_shows_it_labelled(
    video_server: Server, video_app: LiveApp
) -> None:
    """Two Chromium pages in a call; the therapist presses Share screen (Chromium's fake
    capture source, 1280x720). The same peer connections renegotiate within the round: the
    client page's getStats() shows a second video decoding frames, under the mid the therapist
    announced, shown apart from the camera and labelled. Stop sharing turns it inactive (no
    more frames) and the camera goes on; sharing again reuses the mid. A share running when the
    client's socket drops goes into the next round's peer connections, announced again; the
    browser's own "stop sharing" (the capture track ends) stops it the same way."""
    call = video_app.claim()

    async def scenario() -> None:
        async with chromium() as browser:
            _, doctor, doctor_console = await new_page(browser)
            _, patient, patient_console = await new_page(browser)
            await open_room(doctor, video_server.base_url, call.booking, call.therapist_token)
            await join(doctor)
            await open_room(patient, video_server.base_url, call.booking, call.client_token)
            await join(patient, jurisdiction=JURISDICTION)
            await wait_state(patient, "waiting")
            # The client's page has no Share screen button; the therapist's has.
            assert not await patient.is_visible("#share")
            admit = doctor.locator("#waiting-list li button.admit")
            await admit.wait_for(state="visible")
            await admit.click()
            for page, console, who in (
                (patient, patient_console, "client page"),
                (doctor, doctor_console, "therapist page"),
            ):
                try:
                    await wait_media(page)
                except Exception as exc:
                    raise AssertionError(
                        await _fail_with_console(page, console, f"no media in the {who}")
                    ) from exc
            before = await _video_by_mid(patient)
            [camera] = before["video"]
            assert before["labelled"] is False and before["pcs"] == 1

            await doctor.click("#share")
            # The label changes once getDisplayMedia resolves (asynchronously): wait for it.
            await doctor.wait_for_function(
                "() => document.getElementById('share').textContent === 'Stop sharing'"
            )
            await doctor.wait_for_function(SHARE_MID)
            mid = await doctor.evaluate(SHARE_MID)
            assert mid != camera
            try:
                shared = await _until(
                    patient,
                    "the shared screen decodes and shows",
                    lambda s: (
                        s["video"].get(mid, {}).get("frames", 0) > 5
                        and s["shownMid"] == mid
                        and s["playing"] > 0
                    ),
                )
            except AssertionError as exc:
                raise AssertionError(
                    await _fail_with_console(patient, patient_console, str(exc))
                ) from exc
            assert shared["labelled"] == "Your therapist is sharing their screen.", shared
            assert shared["video"][mid]["width"] > 0
            # The same call: one peer connection each side, the same round.
            assert (shared["pcs"], shared["round"]) == (1, before["round"])
            assert await doctor.evaluate("() => window.__pcs.length") == 1
            # The camera still shows in its own place.
            assert await patient.evaluate(
                "() => document.getElementById('remote-video').srcObject.getVideoTracks()[0]"
                " !== document.getElementById('shared-screen').srcObject.getVideoTracks()[0]"
            )

            await doctor.click("#share")  # Stop sharing
            await doctor.wait_for_function(
                "() => document.getElementById('share').textContent === 'Share screen'"
            )
            stopped = await _until(
                patient,
                "the shared screen stops",
                lambda s: (
                    s["labelled"] is False
                    and s["current"].get(mid) == "inactive"
                    and s["muted"].get(mid) is True
                ),
            )
            frames_at_stop = stopped["video"][camera]["frames"]
            await _until(
                patient,
                "the camera goes on",
                lambda s: s["video"][camera]["frames"] > frames_at_stop + 10,
            )

            # Again, then the browser's own "stop sharing": the capture track ends.
            await doctor.click("#share")
            await _until(
                patient,
                "the screen is shared again on the same mid",
                lambda s: s["shownMid"] == mid and s["current"].get(mid) == "recvonly",
            )
            assert await doctor.evaluate(SHARE_MID) == mid

            # The client's socket drops: a new round, new peer connections, the share goes on.
            await patient.evaluate("() => window.__videoCall.socket.close(4000, 'network')")
            await doctor.wait_for_function("() => window.__pcs.length === 2")
            await doctor.wait_for_function(SHARE_MID)
            mid = await doctor.evaluate(SHARE_MID)
            resumed = await _until(
                patient,
                "the share in the next round",
                lambda s: (
                    s["pcs"] == 2
                    and s["shownMid"] == mid
                    and s["video"].get(mid, {}).get("frames", 0) > 5
                ),
            )
            assert resumed["round"] > before["round"] and resumed["labelled"]
            await doctor.evaluate(
                """() => {
                  const track = window.__videoCall.share.track;
                  track.stop();
                  track.dispatchEvent(new Event("ended"));
                }"""
            )
            after = await _until(
                patient,
                "the browser's stop is announced",
                lambda s: s["labelled"] is False and s["current"].get(mid) == "inactive",
            )
            assert after["pcs"] == 2 and after["round"] == resumed["round"]
            assert await text(doctor, "#share") == "Share screen"
            assert await wait_media(patient)
            # Nothing refused by the server (the page logs "video: refused"), no handler failed.
            errors = [
                line
                for line in doctor_console + patient_console
                if "video:" in line or line.startswith("pageerror")
            ]
            assert errors == [], errors

    run_async(scenario(), timeout=180)
    assert video_server.peer_connections() == ""


def test_a_python_client_takes_the_therapist_pages_screen_share_in_the_same_call(
    video_server: Server, video_app: LiveApp
) -> None:
    """The therapist's page shares a screen with an aiortc peer (video.client.VideoClient):
    aiortc answers the second offer of the round on the same peer connection (a new one
    would not match the browser's ICE and DTLS), receives the screen under the announced mid,
    and keeps the call's own video; after stop the call goes on."""
    call = video_app.claim()

    async def scenario() -> None:
        client = VideoClient(name="client")
        try:
            async with chromium() as browser:
                _, doctor, console = await new_page(browser)
                await open_room(doctor, video_server.base_url, call.booking, call.therapist_token)
                await join(doctor)
                await client.join(
                    video_server.base_url, call.client_token, call.booking, JURISDICTION
                )
                await client.connect()
                admit = doctor.locator("#waiting-list li button.admit")
                await admit.wait_for(state="visible")
                await admit.click()
                try:
                    await wait_media(doctor)
                    await client.wait_for_frames(video=5, audio=5)
                except Exception as exc:
                    raise AssertionError(
                        await _fail_with_console(doctor, console, "no call")
                    ) from exc
                pc, round_ = client.pc, client.round

                since = len(client.messages)
                await doctor.click("#share")
                started = await client.wait_for("share", since=since, timeout=15)
                mid = started["mid"]
                assert (started["state"], started["round"]) == ("started", round_)
                await client.wait_until(
                    lambda: client.frames_by_mid.get(mid, 0) >= 10, what="screen frames"
                )
                assert client.pc is pc and client.round == round_ and client.shared_mid == mid
                assert client.dtls_state() == "connected"
                assert not client.errors

                since = len(client.messages)
                await doctor.click("#share")  # Stop sharing
                stopped = await client.wait_for("share", since=since, timeout=15)
                assert (stopped["state"], stopped["mid"]) == ("stopped", mid)
                assert client.shared_mid is None
                video = client.frames_received["video"]
                await client.wait_for_frames(video=video + 10, timeout=30)
                await doctor.wait_for_function(MEDIA_STILL_FLOWING, arg=await _frames(doctor))
                assert client.pc is pc and not client.errors
        finally:
            await client.close()

    run_async(scenario(), timeout=150)
    assert video_server.peer_connections() == ""


def test_a_screen_shared_before_the_client_is_admitted_goes_into_the_calls_first_offer(
    video_server: Server, video_app: LiveApp
) -> None:
    """The therapist presses Share screen alone in the room, before admitting the client. A
    ``share`` belongs to a negotiation round and a waiting client has none, so the page keeps
    the screen and sends nothing: the waiting client hears nothing of it. On admission the
    share is part of the call from its start: announced for the round right before the round's
    first offer, which already carries the screen (no renegotiation), and the client receives
    its frames under the announced mid."""
    call = video_app.claim()

    async def scenario() -> None:
        client = VideoClient(name="client")
        try:
            async with chromium() as browser:
                _, doctor, console = await new_page(browser)
                await open_room(doctor, video_server.base_url, call.booking, call.therapist_token)
                await join(doctor)
                await doctor.wait_for_function(
                    "() => document.getElementById('therapist').hidden === false"
                )
                await doctor.click("#share")
                await doctor.wait_for_function(
                    "() => document.getElementById('share').textContent === 'Stop sharing'"
                )
                await client.join(
                    video_server.base_url, call.client_token, call.booking, JURISDICTION
                )
                await client.connect()
                admit = doctor.locator("#waiting-list li button.admit")
                await admit.wait_for(state="visible")
                # Sharing, with nobody to share with: no connection, nothing sent or refused.
                assert await doctor.evaluate("() => window.__pcs.length") == 0
                waited = len(client.messages)
                await admit.click()
                await client.wait_until_in_call()
                try:
                    await client.wait_until(
                        lambda: (
                            client.shared_mid is not None
                            and client.frames_by_mid.get(client.shared_mid, 0) >= 10
                        ),
                        what="screen frames",
                    )
                    await client.wait_for_frames(video=5, audio=5)
                except TimeoutError as exc:
                    seen = [
                        (m["type"], m.get("round"), m.get("mid"), m.get("state"))
                        for m in client.messages
                    ]
                    why = f"{exc}: {seen} {client.frames_by_mid}"
                    raise AssertionError(await _fail_with_console(doctor, console, why)) from exc
                before = [m["type"] for m in client.messages[:waited]]
                assert "share" not in before and "peer-joined" not in before, before
                told = [m for m in client.messages[waited:] if m["type"] in {"share", "offer"}]
                # The share of the round, then the round's one offer (with the screen in it).
                assert [m["type"] for m in told] == ["share", "offer"], told
                share, offer = told
                assert (share["state"], share["round"]) == ("started", client.round)
                assert offer["round"] == client.round
                assert f"a=mid:{share['mid']}" in offer["sdp"]
                assert client.shared_mid == share["mid"] and not client.errors
                assert await doctor.evaluate("() => window.__pcs.length") == 1
                assert not [line for line in console if "video:" in line]
        finally:
            await client.close()

    run_async(scenario(), timeout=150)
    assert video_server.peer_connections() == ""


MEDIA_STILL_FLOWING = """(before) => {
  const s = window.__pcSummary;
  return !!s && s.count === 1 && s.framesDecoded > before + 10;
}"""


async def _frames(page: Page) -> int:
    summary = await page.evaluate("() => window.__pcStatsNow()")
    return int(summary["framesDecoded"])


def test_an_outsiders_token_gets_the_not_found_message(
    video_server: Server, video_app: LiveApp
) -> None:
    call = video_app.claim()

    async def scenario() -> None:
        async with chromium() as browser:
            _, page, _ = await new_page(browser)
            await open_room(page, video_server.base_url, call.booking, video_app.outsider_token)
            await join(page, jurisdiction=JURISDICTION)
            await wait_state(page, "refused")
            assert "could not find this appointment" in await text(page, "#message")
            assert await page.evaluate("() => window.__pcs.length") == 0

            # A booking that does not exist: the same message (VID-01: no difference).
            await open_room(page, video_server.base_url, str(uuid.uuid4()), call.client_token)
            await join(page, jurisdiction=JURISDICTION)
            await wait_state(page, "refused")
            assert "could not find this appointment" in await text(page, "#message")

    run_async(scenario(), timeout=90)


@pytest.mark.parametrize(
    ("tamper", "code", "message"),
    [
        ("room", 4403, "You cannot enter this room"),
        ("token", 4401, "not valid or has expired"),
    ],
)
def test_a_refused_socket_shows_its_close_code_message(
    video_server: Server, video_app: LiveApp, tamper: str, code: int, message: str
) -> None:
    """The real join answer, altered on its way to the page: the socket of another room (4403)
    or a forged room token (4401). The page shows that close code's message and gives up."""
    call = video_app.claim()

    async def alter(route: Route) -> None:
        response = await route.fetch()
        body = await response.json()
        if tamper == "room":
            body["ws_url"] = body["ws_url"].replace(body["room"], str(uuid.uuid4()))
        else:
            header, payload, _ = body["token"].split(".")
            body["token"] = f"{header}.{payload}.{'A' * 86}"
        await route.fulfill(response=response, body=json.dumps(body))

    async def scenario() -> None:
        async with chromium() as browser:
            _, page, console = await new_page(browser)
            await page.route("**/api/v1/video/rooms/*/join", alter)
            await open_room(page, video_server.base_url, call.booking, call.client_token)
            await join(page, jurisdiction=JURISDICTION)
            try:
                await wait_state(page, "refused")
            except Exception as exc:
                raise AssertionError(
                    await _fail_with_console(page, console, "not refused")
                ) from exc
            assert message in await text(page, "#message")
            assert await page.evaluate("() => window.__videoCall.participant") is None

    run_async(scenario(), timeout=90)


def test_a_denied_client_is_told_so(video_server: Server, video_app: LiveApp) -> None:
    call = video_app.claim()

    async def scenario() -> None:
        therapist = VideoClient(name="therapist")
        await therapist.join(video_server.base_url, call.therapist_token, call.booking)
        await therapist.connect()
        try:
            async with chromium() as browser:
                _, page, _ = await new_page(browser)
                await open_room(page, video_server.base_url, call.booking, call.client_token)
                await join(page, jurisdiction=JURISDICTION)
                await wait_state(page, "waiting")
                [participant] = await therapist.waiting_participants(1)
                await therapist.send("deny", participant=participant)
                await wait_state(page, "refused")
                assert "did not let you into this session" in await text(page, "#message")
                assert await page.evaluate("() => window.__pcs.length") == 0
        finally:
            await therapist.close()

    run_async(scenario(), timeout=90)


def test_a_dropped_page_socket_reconnects_and_resumes_the_call(
    video_server: Server, video_app: LiveApp
) -> None:
    """The page's socket drops (closed under it, not by the user): it shows "Reconnecting…",
    joins again for a fresh room token, says hello with its resume token and is back in the call
    without being admitted again; a new round brings media on a new peer connection."""
    call = video_app.claim()

    async def scenario() -> None:
        therapist = VideoClient(name="therapist")
        await therapist.join(video_server.base_url, call.therapist_token, call.booking)
        await therapist.connect()
        try:
            async with chromium() as browser:
                _, page, console = await new_page(browser)
                await open_room(page, video_server.base_url, call.booking, call.client_token)
                await join(page, jurisdiction=JURISDICTION)
                await wait_state(page, "waiting")
                [participant] = await therapist.waiting_participants(1)
                await therapist.admit(participant)
                await wait_media(page)
                first_round = therapist.round

                since = len(therapist.messages)
                # A network drop, as the page sees it: the socket closes with a code that is
                # not one of the server's refusals.
                await page.evaluate("() => window.__videoCall.socket.close(4000, 'network')")
                await wait_state(page, "reconnecting")
                assert "Reconnecting" in await text(page, "#status")
                left = await therapist.wait_for("peer-left", since=since, timeout=15)
                assert left["reason"] == "disconnected"
                back = await therapist.wait_for("peer-joined", since=since, timeout=30)
                assert back["round"] > first_round
                try:
                    await page.wait_for_function("() => window.__pcs.length === 2")
                    stats = await wait_media(page)
                except Exception as exc:
                    why = await _fail_with_console(page, console, "no media after resume")
                    raise AssertionError(why) from exc
                _assert_encrypted_on_loopback(stats, "client page after resume")
                assert await page.evaluate("() => document.body.dataset.state") == "in-call"
                # Resumed, not admitted again: no waiting-list entry for the client.
                assert not any(
                    m["type"] == "waiting-list" and m.get("waiting")
                    for m in therapist.messages[since:]
                )
        finally:
            await therapist.close()

    run_async(scenario(), timeout=120)


DENY_CAMERA = """
navigator.mediaDevices.getUserMedia = async () => {
  throw new DOMException("Permission denied", "NotAllowedError");
};
"""


def test_room_not_open_says_when_in_local_time_and_camera_denial_gets_advice(
    video_server: Server,
) -> None:
    """A join answered 409 ``room_not_open`` (served by the test) names the opening time in
    the browser's time zone; a camera the user refused gets advice, and joining stays possible."""
    booking = str(uuid.uuid4())
    problem = {
        "type": "urn:telehealth:problem:room_not_open",
        "title": "Conflict",
        "status": 409,
        "code": "room_not_open",
        "detail": "The room is not open yet.",
        "opens_at": "2031-03-04T15:20:00Z",
    }

    async def refuse(route: Route) -> None:
        await route.fulfill(
            status=409, content_type="application/problem+json", body=json.dumps(problem)
        )

    async def scenario() -> None:
        async with chromium() as browser:
            context = await browser.new_context(timezone_id="America/New_York", locale="en-US")
            await context.add_init_script(DENY_CAMERA)
            page = await context.new_page()
            await page.route("**/api/v1/video/rooms/*/join", refuse)
            await open_room(page, video_server.base_url, booking, "a.b.c")
            await page.wait_for_function("() => !document.getElementById('media-advice').hidden")
            assert "allow both for this site" in await text(page, "#media-advice")
            await join(page, jurisdiction=JURISDICTION)
            await wait_state(page, "refused")
            message = await text(page, "#message")
            assert "not open yet" in message
            assert "March 4, 2031" in message and "10:20" in message, message  # 15:20Z in New York

    run_async(scenario(), timeout=60)
