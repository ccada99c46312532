"""Headless Chromium for the browser tests (tests/video/test_browser.py), by Playwright's async
API with Debian's ``/usr/bin/chromium`` (never a downloaded browser).

Fake camera and microphone, no permission prompt, loopback candidates allowed. Every page gets
an init script, run before the page's own, that wraps ``RTCPeerConnection``: each connection the
page makes is kept in ``window.__pcs``, and ``window.__pcStatsNow()`` summarises the latest one
from ``getStats()`` (``window.__pcSummary`` holds it, refreshed every 250 ms, for sync waits).
So the tests read what the browser itself reports, whatever the page does.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page, async_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
WAIT_MS = 30_000

PEER_CONNECTION_PROBE = """
(() => {
  const Native = window.RTCPeerConnection;
  if (!Native || window.__pcs) return;
  window.__pcs = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      window.__pcs.push(this);
    }
  };
  window.__pcStatsNow = async () => {
    const pc = window.__pcs[window.__pcs.length - 1];
    if (!pc) return null;
    const stats = await pc.getStats();
    const summary = {
      count: window.__pcs.length, connectionState: pc.connectionState,
      dtlsState: null, srtpCipher: null, tlsVersion: null,
      framesDecoded: 0, audioPacketsReceived: 0,
      local: null, remote: null,
    };
    let transport = null;
    stats.forEach((report) => {
      if (report.type === "transport") transport = report;
      if (report.type === "inbound-rtp" && report.kind === "video") {
        summary.framesDecoded += report.framesDecoded || 0;
      }
      if (report.type === "inbound-rtp" && report.kind === "audio") {
        summary.audioPacketsReceived += report.packetsReceived || 0;
      }
    });
    if (transport) {
      summary.dtlsState = transport.dtlsState;
      summary.srtpCipher = transport.srtpCipher || null;
      summary.tlsVersion = transport.tlsVersion || null;
      const pairId = transport.selectedCandidatePairId;
      const pair = pairId && stats.get(pairId);
      const side = (id) => {
        const c = id && stats.get(id);
        return c ? { address: c.address || c.ip, port: c.port, type: c.candidateType } : null;
      };
      if (pair) {
        summary.local = side(pair.localCandidateId);
        summary.remote = side(pair.remoteCandidateId);
      }
    }
    return summary;
  };
  setInterval(async () => {
    try { window.__pcSummary = await window.__pcStatsNow(); } catch (e) { /* closed */ }
  }, 250);
})();
"""

MEDIA_FLOWING = """() => {
  const s = window.__pcSummary;
  return !!s && s.count === window.__pcs.length && s.dtlsState === "connected"
    && s.framesDecoded > 0 && s.audioPacketsReceived > 0;
}"""


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """One headless Chromium with a fresh profile, closed afterwards."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=[*CHROMIUM_FLAGS, f"--crash-dumps-dir={Path(profile) / 'crashes'}"],
            )
            try:
                yield browser
            finally:
                await browser.close()


async def new_page(browser: Browser) -> tuple[BrowserContext, Page, list[str]]:
    """A fresh context (its own storage) with the probe; the list collects console errors."""
    context = await browser.new_context()
    await context.add_init_script(PEER_CONNECTION_PROBE)
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    return context, page, console


async def open_room(page: Page, base_url: str, booking: str, token: str) -> None:
    """The reference page with the access token in the fragment (never sent to the server)."""
    await page.goto(f"{base_url}/video/{booking}/#token={token}")
    await page.wait_for_function("() => document.body.dataset.state === 'idle'")


async def join(page: Page, *, jurisdiction: str | None = None) -> None:
    if jurisdiction is not None:
        await page.fill("#jurisdiction", jurisdiction)
    await page.click("#join")


async def wait_state(page: Page, state: str, timeout: float = WAIT_MS) -> None:
    await page.wait_for_function(
        "state => document.body.dataset.state === state", arg=state, timeout=timeout
    )


async def wait_media(page: Page, timeout: float = WAIT_MS) -> dict[str, Any]:
    """Wait until the page's latest connection (not an earlier one still summarised) has DTLS
    up, decoded a video frame and received audio; then its stats, read afresh."""
    await page.wait_for_function(MEDIA_FLOWING, timeout=timeout, polling=250)
    return await page.evaluate("() => window.__pcStatsNow()")


async def text(page: Page, selector: str) -> str:
    return (await page.text_content(selector)) or ""
