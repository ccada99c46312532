"""The reference page's "Test my camera and connection" step in headless Chromium (fake camera
and microphone) against the echo peer of a real app, in the loopback-only namespace (make
test-webrtc). The assertions read the browser's own ``getStats()`` (the echoed video decoded
over DTLS-SRTP) and the report the page shows."""

from __future__ import annotations

import uuid

import pytest

from tests.video.browser_support import MEDIA_FLOWING, chromium, new_page, open_room, text
from tests.video.webrtc_support import LiveApp, Server, run_async

pytestmark = pytest.mark.webrtc


def test_the_page_sees_its_camera_come_back_and_shows_the_verdict(
    video_app: LiveApp, precall_server: Server
) -> None:
    call = video_app.claim()

    async def scenario() -> tuple[dict, dict, str, list[str]]:
        async with chromium() as browser:
            _, page, console = await new_page(browser)
            # The test needs no booking: any page of the reference app offers it.
            await open_room(page, precall_server.base_url, str(uuid.uuid4()), call.client_token)
            assert await page.evaluate("() => document.body.dataset.precall") == "idle"
            await page.click("#precall-start")
            try:
                # The echo of the page's own fake camera, decoded by the page, over DTLS-SRTP.
                await page.wait_for_function(MEDIA_FLOWING, timeout=30_000, polling=250)
                stats = await page.evaluate("() => window.__pcStatsNow()")
                await page.wait_for_function(
                    "() => document.body.dataset.precall === 'done'", timeout=40_000
                )
            except Exception as exc:
                status = await text(page, "#precall-status")
                raise AssertionError(f"{status}\n" + "\n".join(console[-20:])) from exc
            report = await page.evaluate("() => window.__precall.report")
            verdict = await text(page, "#precall-verdict")
            figures = await page.eval_on_selector_all(
                "#precall-figures dt", "nodes => nodes.map(n => n.textContent)"
            )
            return stats, report, verdict, figures

    stats, report, verdict, figures = run_async(scenario(), timeout=120)
    assert stats["dtlsState"] == "connected" and stats["srtpCipher"], stats
    assert stats["framesDecoded"] > 0 and stats["audioPacketsReceived"] > 0, stats
    assert stats["local"]["address"] == stats["remote"]["address"] == "127.0.0.1", stats
    assert report["reason"] == "completed", report
    assert report["verdict"] in ("good", "fair"), report  # loopback, on a shared machine
    metrics = report["metrics"]
    assert metrics["video_received"] and metrics["audio_received"], metrics
    # The page asked for the cap (320x240 at 15 fps); Chromium's fake camera obliges.
    assert (metrics["video_width"], metrics["video_height"]) == (320, 240), metrics
    assert metrics["rtt_samples"] >= 5 and metrics["rtt_ms"] < 100, metrics
    assert verdict.startswith(report["verdict"].capitalize() + ":")
    assert figures[:4] == [
        "Round trip",
        "Packets lost (sending / receiving)",
        "Jitter (sending / receiving)",
        "Bitrate (sending / receiving)",
    ]
    assert "video/precall/echo.py" in precall_server.peer_connections()
