"""A Python client of the pre-call test: aiortc with a synthetic camera and microphone.

Used by the tests and the benchmark (docs/video.md, "Pre-call test")::

    test = PrecallClient()
    await test.start(api_base, access_token, seconds=5)   # POST /api/v1/video/precall
    await test.offer()                                    # POST .../offer; the answer applied
    report = await test.wait_for_report()                 # verdict, advice, metrics
    await test.close()

The camera is a moving pattern of ``width``x``height`` at ``fps`` (paced by the wall clock, as a
camera is), the microphone aiortc's silence; ``frames_sent``/``frames_received`` count video
frames out and back. The data channel answers the echo peer's pings and pings it too
(``rtts_ms``). The offer carries every candidate (aiortc gathers before it returns). Logs name
states, never an SDP, a candidate or a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import logging
import operator
import random
import time
from typing import Any

from aiortc import MediaStreamTrack, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack
from av import VideoFrame

from video.client import http_post, ice_configuration
from video.ice import peer_connection

logger = logging.getLogger(__name__)

START_PATH = "/api/v1/video/precall"
VIDEO_CLOCK = 90_000
PATTERN_FRAMES = 30
NOISE_LEVELS = 12  # luma steps of the sensor noise


class PrecallRefused(Exception):
    """The API said no: ``status`` and the problem document."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"pre-call refused: {status} {problem.get('code', '')}")
        self.status = status
        self.problem = problem


def _pattern(width: int, height: int) -> list[bytes]:
    """Luma planes of a diagonal gradient with a bright bar moving across it, and a camera
    sensor's faint noise, new in every frame (what makes a real camera's video cost bits)."""
    rows = [
        bytes(((x + y) * 208 // (width + height)) + 16 for x in range(width)) for y in range(height)
    ]
    bar = max(2, width // 10)
    noise = random.Random(PATTERN_FRAMES)  # noqa: S311 - a picture, not a secret
    faint = bytes(value % NOISE_LEVELS for value in range(256))
    planes = []
    for k in range(PATTERN_FRAMES):
        left = k * (width - bar) // (PATTERN_FRAMES - 1)
        block = bytes([224]) * bar
        picture = b"".join(row[:left] + block + row[left + bar :] for row in rows)
        grain = noise.randbytes(len(picture)).translate(faint)
        planes.append(bytes(map(operator.add, picture, grain)))
    return planes


class PatternVideoTrack(VideoStreamTrack):
    """A camera: ``fps`` frames a second of a moving pattern, ``width``x``height``."""

    def __init__(self, *, width: int, height: int, fps: int) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self._planes = _pattern(width, height)
        self._chroma = bytes([128]) * ((width // 2) * (height // 2))
        self._started: float | None = None
        self.frames_sent = 0

    async def pace(self) -> int:
        """Wait for the next frame's time (as a camera does); its pts in 1/90000 s."""
        now = time.monotonic()
        if self._started is None:
            self._started = now
        else:
            delay = self._started + self.frames_sent / self.fps - now
            if delay > 0:
                await asyncio.sleep(delay)
        return self.frames_sent * VIDEO_CLOCK // self.fps

    async def recv(self) -> VideoFrame:
        pts = await self.pace()
        frame = VideoFrame(width=self.width, height=self.height)
        frame.planes[0].update(self._planes[self.frames_sent % PATTERN_FRAMES])
        frame.planes[1].update(self._chroma)
        frame.planes[2].update(self._chroma)
        frame.pts = pts
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.frames_sent += 1
        return frame


class PrecallClient:
    """One pre-call test from start to report."""

    def __init__(
        self,
        *,
        name: str = "precall",
        width: int = 320,
        height: int = 240,
        fps: int = 15,
        audio: bool = True,
        video: bool = True,
        data_channel: bool = True,
        camera: PatternVideoTrack | None = None,
    ) -> None:
        """``camera``: another video source (the benchmark's pre-encoded one) instead of a
        ``PatternVideoTrack`` of ``width``x``height`` at ``fps``."""
        self.name = name
        self.width, self.height, self.fps = width, height, fps
        self.send_audio, self.send_video, self.data_channel = audio, video, data_channel
        self.started: dict[str, Any] | None = None
        self.answer: dict[str, Any] | None = None
        self.pc: RTCPeerConnection | None = None
        self.channel: RTCDataChannel | None = None
        self.camera = camera
        self.frames_received: dict[str, int] = {"audio": 0, "video": 0}
        self.received_sizes: set[tuple[int, int]] = set()
        self.stats: list[dict[str, Any]] = []
        self.report: dict[str, Any] | None = None
        self.rtts_ms: list[float] = []
        self.pings_answered = 0
        self._pings: dict[int, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    @property
    def frames_sent(self) -> int:
        return self.camera.frames_sent if self.camera is not None else 0

    async def start(
        self, api_base: str, access_token: str, *, seconds: int | None = None
    ) -> dict[str, Any]:
        """``POST /api/v1/video/precall``; ``PrecallRefused`` on any refusal."""
        body = {} if seconds is None else {"seconds": seconds}
        url = api_base.rstrip("/") + START_PATH
        status, data = await asyncio.to_thread(http_post, url, access_token, body)
        if status != 200:
            raise PrecallRefused(status, data)
        self.started = data
        return data

    async def create_offer(self) -> str:
        """A new peer connection's offer, every candidate in it."""
        assert self.started is not None, "start first"
        pc = peer_connection(ice_configuration(self.started["ice_servers"]))
        self.pc = pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            task = asyncio.create_task(self._count(track))
            self._tasks.add(task)

        if self.send_audio:
            pc.addTrack(AudioStreamTrack())
        if self.send_video:
            if self.camera is None:
                self.camera = PatternVideoTrack(width=self.width, height=self.height, fps=self.fps)
            pc.addTrack(self.camera)
        if self.data_channel:
            self.channel = pc.createDataChannel("precall")
            self.channel.on("message", self._on_message)
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp

    async def send_offer(self, sdp: str, *, token: str | None = None) -> dict[str, Any]:
        """POST the offer (with this test's token, or ``token``); ``PrecallRefused`` if refused."""
        assert self.started is not None
        body = {"token": token or self.started["token"], "sdp": sdp}
        status, data = await asyncio.to_thread(http_post, self.started["offer_url"], None, body)
        if status != 200:
            raise PrecallRefused(status, data)
        return data

    async def offer(self) -> dict[str, Any]:
        """Offer, and apply the echo peer's answer: media starts flowing."""
        self.answer = await self.send_offer(await self.create_offer())
        assert self.pc is not None
        await self.pc.setRemoteDescription(
            RTCSessionDescription(sdp=self.answer["sdp"], type="answer")
        )
        self._tasks.add(asyncio.create_task(self._pinger()))
        return self.answer

    def _on_message(self, raw: Any) -> None:
        try:
            message = json.loads(raw)
        except (TypeError, ValueError):
            return
        kind = message.get("type")
        if kind == "ping":
            self._send({"type": "pong", "seq": message.get("seq")})
            self.pings_answered += 1
        elif kind == "pong":
            sent = self._pings.pop(message.get("seq"), None)
            if sent is not None:
                self.rtts_ms.append((time.monotonic() - sent) * 1000)
        elif kind == "stats":
            self.stats.append(message)
        elif kind == "report":
            self.report = message
            logger.info("%s: report %s", self.name, message.get("verdict"))
        self._changed.set()

    def _send(self, message: dict[str, Any]) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(json.dumps(message))

    async def _pinger(self) -> None:
        seq = 0
        while True:
            if self.channel is not None and self.channel.readyState == "open":
                seq += 1
                self._pings[seq] = time.monotonic()
                self._send({"type": "ping", "seq": seq})
            await asyncio.sleep(0.5)

    async def _count(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.frames_received[track.kind] += 1
            if isinstance(frame, VideoFrame):
                self.received_sizes.add((frame.width, frame.height))

    async def wait_for_report(self, *, timeout: float = 60) -> dict[str, Any]:
        async def wait() -> dict[str, Any]:
            while self.report is None:
                self._changed.clear()
                await self._changed.wait()
            return self.report

        return await asyncio.wait_for(wait(), timeout)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        if self.pc is not None:
            with contextlib.suppress(Exception):
                await self.pc.close()
