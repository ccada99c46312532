"""The echo peer: one pre-call test, an aiortc peer that sends the user's media back
(docs/video.md, "Pre-call test"). It runs in a media worker (``video.precall.workers``).

``EchoSession.answer(offer)`` answers the user's offer (every candidate in the SDP: aiortc does
not trickle). Each audio track received is sent back as it comes; each video track through
``CappedVideo``, which keeps at most ``fps`` frames a second and scales larger frames down to fit
``width``x``height``: what the worker encodes is bounded whatever the device sends. The user's
data channel carries JSON text messages both ways:

- ``{"type": "ping", "seq": n}`` answered at once by ``{"type": "pong", "seq": n}`` (either
  side may ping; the echo peer pings every half second and times the pongs);
- ``{"type": "stats", "elapsed": s, "metrics": {...}}`` from the echo peer every second;
- ``{"type": "report", "verdict": ..., "advice": [...], "metrics": {...}, "reason": ...}`` at
  the end, after which the echo peer closes the connection.

The test ends after its ``seconds`` of measurement from the moment media connects, when the
user's side closes or fails, or ``connect_seconds`` after the answer if nothing connected:
``on_finished`` then gets the result (the worker frees the slot and records it). Logs name the
test and its states; never an SDP, a candidate or an address.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fractions
import json
import logging
import queue
import statistics
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
    rtcrtpreceiver,
)
from av import VideoFrame
from av.packet import Packet
from django.conf import settings

from video.ice import SelectedPair, peer_connection, selected_pair
from video.precall.metrics import Direction, Metrics, Verdict, precall_verdict

logger = logging.getLogger("video.precall")

CLOCK_RATE = {"audio": 48_000, "video": 90_000}  # Opus and every video codec's RTP clock
PING_INTERVAL = 0.5
STATS_INTERVAL = 1.0
MAX_DATA_MESSAGE = 256  # bytes: a ping or a pong; anything larger is ignored
COMPLETED, CLOSED, NOT_CONNECTED, STOPPED = "completed", "closed", "not_connected", "stopped"


@dataclass(frozen=True)
class EchoLimits:
    """What one echo test may cost: its video's size and frame rate, how long it may take."""

    width: int
    height: int
    fps: int
    connect_seconds: float
    max_seconds: int

    @classmethod
    def from_settings(cls) -> EchoLimits:
        return cls(
            width=settings.VIDEO_PRECALL_WIDTH,
            height=settings.VIDEO_PRECALL_HEIGHT,
            fps=settings.VIDEO_PRECALL_FPS,
            connect_seconds=settings.VIDEO_PRECALL_CONNECT_SECONDS,
            max_seconds=settings.VIDEO_PRECALL_MAX_SECONDS,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "max_seconds": self.max_seconds,
        }


@dataclass(frozen=True)
class EchoResult:
    test_id: uuid.UUID
    reason: str  # completed, closed (by the user's side), not_connected, stopped (worker)
    metrics: Metrics
    verdict: Verdict
    frames_echoed: int

    def report(self) -> dict[str, Any]:
        return {
            "type": "report",
            "reason": self.reason,
            **self.verdict.as_dict(),
            "metrics": self.metrics.as_dict(),
        }


@dataclass
class _Counters:
    frames_in: int = 0
    frames_out: int = 0
    width: int | None = None
    height: int | None = None


# --- Sound goes back as it came --------------------------------------------------------------
# aiortc decodes every received Opus packet in a thread of its receiver, and its sender encodes
# every frame again in the executor: for an echo, most of a test's CPU (bench_precall.py). Its
# sender also takes packets already encoded (it only packetizes them), but its receiver has no
# way to hand over encoded frames. So the receiver's decoder thread is given a worker that, for
# the echo's own audio tracks only (their queues are registered here), passes each encoded
# frame on as a packet instead of decoding it; every other receiver in the process runs
# aiortc's worker unchanged. This reaches into aiortc's module (``decoder_worker``) and the
# track's ``_queue`` (docs/adr/0009): remove it when aiortc offers encoded frames.

_PASS_THROUGH: weakref.WeakSet[asyncio.Queue[Any]] = weakref.WeakSet()
_OPUS_TIME_BASE = fractions.Fraction(1, CLOCK_RATE["audio"])


def _pass_through_worker(aiortc_worker: Callable[..., None]) -> Callable[..., None]:
    def worker(
        loop: asyncio.AbstractEventLoop,
        input_q: queue.Queue[Any],
        output_q: asyncio.Queue[Any],
        decode_error: threading.Event,
    ) -> None:
        if output_q not in _PASS_THROUGH:
            aiortc_worker(loop, input_q, output_q, decode_error)
            return
        while True:
            task = input_q.get()
            if task is None:
                asyncio.run_coroutine_threadsafe(output_q.put(None), loop)
                return
            _, encoded = task
            packet = Packet(encoded.data)
            packet.pts = encoded.timestamp
            packet.time_base = _OPUS_TIME_BASE
            asyncio.run_coroutine_threadsafe(output_q.put(packet), loop)

    worker.precall_pass_through = True  # type: ignore[attr-defined]
    return worker


if not getattr(rtcrtpreceiver.decoder_worker, "precall_pass_through", False):
    rtcrtpreceiver.decoder_worker = _pass_through_worker(rtcrtpreceiver.decoder_worker)


def fit(width: int, height: int, *, max_width: int, max_height: int) -> tuple[int, int]:
    """The largest even size within the box with the frame's aspect (never larger than it)."""
    scale = min(max_width / width, max_height / height, 1.0)
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


class CappedVideo(MediaStreamTrack):
    """The user's video sent back: at most ``fps`` frames a second, within the size cap."""

    kind = "video"

    def __init__(self, source: MediaStreamTrack, limits: EchoLimits, counters: _Counters):
        super().__init__()
        self._source = source
        self._limits = limits
        self._counters = counters
        # Keep a frame when at least 80 % of the cap's interval passed since the last one kept:
        # a 30 fps camera becomes 15, a 15 fps one stays 15 despite timing noise.
        self._min_gap = 0.8 / max(1, limits.fps)
        self._last: float | None = None

    async def recv(self) -> VideoFrame:
        while True:
            frame = await self._source.recv()
            assert isinstance(frame, VideoFrame)
            counters = self._counters
            counters.frames_in += 1
            counters.width, counters.height = frame.width, frame.height
            base = frame.time_base
            at = float(frame.pts * base) if frame.pts is not None and base is not None else None
            if at is not None and self._last is not None and 0 <= at - self._last < self._min_gap:
                continue
            self._last = at
            limits = self._limits
            if frame.width > limits.width or frame.height > limits.height:
                width, height = fit(
                    frame.width, frame.height, max_width=limits.width, max_height=limits.height
                )
                scaled = frame.reformat(width=width, height=height)
                scaled.pts, scaled.time_base = frame.pts, frame.time_base
                frame = scaled
            counters.frames_out += 1
            return frame


@dataclass
class _Sample:
    at: float
    inbound: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # recv, lost, jitter
    remote: dict[str, tuple[int, int, float | None]] = field(default_factory=dict)  # lost, jit, rtt
    sent: dict[str, int] = field(default_factory=dict)  # packets sent per kind
    bytes_in: int = 0
    bytes_out: int = 0
    frames: int = 0  # video frames received from the user so far


def _ms(jitter_units: float, kind: str) -> float:
    return jitter_units / CLOCK_RATE.get(kind, 90_000) * 1000


def _audio_first(by_kind: dict[str, float]) -> float | None:
    """The audio's jitter, else the video's: jitter is what makes sound stutter, and a video
    stream's RTP jitter mostly measures how evenly its sender's encoder paces the frames."""
    return by_kind.get("audio", by_kind.get("video"))


def _loss_pct(lost: int, total: int) -> float | None:
    return None if total <= 0 else 100.0 * max(0, lost) / total


def _kbps(byte_count: int, seconds: float) -> float | None:
    return None if seconds <= 0 else byte_count * 8 / seconds / 1000


class EchoSession:
    """One test: answer, echo, measure, report, close. ``clock`` is monotonic seconds."""

    def __init__(
        self,
        *,
        test_id: uuid.UUID,
        seconds: int,
        limits: EchoLimits,
        on_finished: Callable[[EchoResult], Awaitable[None]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.test_id = test_id
        self.seconds = min(seconds, limits.max_seconds)
        self.limits = limits
        self.on_finished = on_finished
        self.clock = clock
        self.pc: RTCPeerConnection | None = None
        self.channel: RTCDataChannel | None = None
        self.counters = _Counters()
        self.expect: set[str] = set()
        self.rtts_ms: list[float] = []
        self._pings_sent: dict[int, float] = {}
        self._connected = asyncio.Event()
        self._ended = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._answered_at = clock()

    @property
    def latest_end(self) -> float:
        """When (``clock``) this test will have ended at the latest."""
        return self._answered_at + self.limits.connect_seconds + self.seconds + 2

    async def answer(self, offer_sdp: str) -> str:
        """The answer to the user's offer (already checked by ``video.sdp``); starts the test.
        ``ValueError`` if aiortc cannot take the offer."""
        self._answered_at = self.clock()
        pc = peer_connection(_configuration())
        self.pc = pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self.expect.add(track.kind)
            if track.kind == "video":
                pc.addTrack(CappedVideo(track, self.limits, self.counters))
            else:
                _PASS_THROUGH.add(track._queue)  # type: ignore[attr-defined]
                pc.addTrack(track)

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            self.channel = channel
            channel.on("message", self._on_message)

        @pc.on("connectionstatechange")
        def on_state() -> None:
            logger.info("precall %s: connection %s", self.test_id, pc.connectionState)
            if pc.connectionState == "connected":
                self._connected.set()
            elif pc.connectionState in ("failed", "closed"):
                self._ended.set()

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc asserts and raises ValueError on what it cannot do
            await pc.close()
            raise ValueError("the offer cannot be answered") from exc
        # A fresh context: not the request's, whose thread executor (asgiref's
        # ThreadSensitiveContext) is shut down once the answer has been sent.
        self._task = asyncio.create_task(
            self._run(), name=f"precall-{self.test_id}", context=contextvars.Context()
        )
        return pc.localDescription.sdp

    async def stop(self) -> None:
        """End the test now (the worker is shutting down)."""
        self._stopping = True
        self._ended.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # --- the data channel ------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        channel = self.channel
        if channel is not None and channel.readyState == "open":
            channel.send(json.dumps(message, separators=(",", ":")))

    def _on_message(self, raw: Any) -> None:
        if not isinstance(raw, str) or len(raw) > MAX_DATA_MESSAGE:
            return
        try:
            message = json.loads(raw)
            kind, seq = message.get("type"), message.get("seq")
        except (ValueError, AttributeError):
            return
        if not isinstance(seq, int) or isinstance(seq, bool):
            return
        if kind == "ping":
            self._send({"type": "pong", "seq": seq})
        elif kind == "pong":
            sent = self._pings_sent.pop(seq, None)
            if sent is not None:
                self.rtts_ms.append((self.clock() - sent) * 1000)

    async def _pinger(self) -> None:
        seq = 0
        while True:
            if self.channel is not None and self.channel.readyState == "open":
                seq += 1
                self._pings_sent[seq] = self.clock()
                self._send({"type": "ping", "seq": seq})
            await asyncio.sleep(PING_INTERVAL)

    # --- the test --------------------------------------------------------------------------

    async def _run(self) -> None:
        reason = NOT_CONNECTED
        first: _Sample | None = None
        last: _Sample | None = None
        pinger: asyncio.Task[None] | None = None
        try:
            waits = [asyncio.create_task(event.wait()) for event in (self._connected, self._ended)]
            await asyncio.wait(
                waits, timeout=self.limits.connect_seconds, return_when=asyncio.FIRST_COMPLETED
            )
            for wait in waits:
                wait.cancel()
            if self._connected.is_set() and not self._ended.is_set():
                first = last = await self._sample()
                pinger = asyncio.create_task(self._pinger())
                reason = COMPLETED
                while self.clock() - first.at < self.seconds:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._ended.wait(), STATS_INTERVAL)
                    if self._ended.is_set():
                        reason = STOPPED if self._stopping else CLOSED
                        break
                    last = await self._sample()
                    metrics = self._metrics(first, last)
                    self._send(
                        {
                            "type": "stats",
                            "elapsed": round(last.at - first.at, 1),
                            "metrics": metrics.as_dict(),
                        }
                    )
        finally:
            if pinger is not None:
                pinger.cancel()
            metrics = self._metrics(first, last)
            result = EchoResult(
                test_id=self.test_id,
                reason=reason,
                metrics=metrics,
                verdict=precall_verdict(
                    metrics,
                    expect_video="video" in self.expect,
                    expect_audio="audio" in self.expect,
                    fps_cap=self.limits.fps,
                ),
                frames_echoed=self.counters.frames_out,
            )
            with contextlib.suppress(Exception):
                self._send(result.report())
                await self._flush()
            if self.pc is not None:
                await self.pc.close()
            logger.info("precall %s: ended (%s, %s)", self.test_id, reason, result.verdict.level)
            await self.on_finished(result)

    async def _flush(self) -> None:
        """Give the report a moment to leave before the connection closes (bounded)."""
        channel = self.channel
        if channel is None or channel.readyState != "open":
            return
        for _ in range(20):
            if channel.bufferedAmount == 0:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)  # the SCTP association sends what it was given

    async def _sample(self) -> _Sample:
        assert self.pc is not None
        sample = _Sample(at=self.clock(), frames=self.counters.frames_in)
        for stats in (await self.pc.getStats()).values():
            kind = getattr(stats, "kind", "")
            if stats.type == "inbound-rtp":
                received, lost, jitter = sample.inbound.get(kind, (0, 0, 0))
                sample.inbound[kind] = (
                    received + stats.packetsReceived,
                    lost + stats.packetsLost,
                    max(jitter, stats.jitter),
                )
            elif stats.type == "remote-inbound-rtp":
                sample.remote[kind] = (stats.packetsLost, stats.jitter, stats.roundTripTime)
            elif stats.type == "outbound-rtp":
                sample.sent[kind] = sample.sent.get(kind, 0) + stats.packetsSent
            elif stats.type == "transport":
                sample.bytes_in = max(sample.bytes_in, stats.bytesReceived)
                sample.bytes_out = max(sample.bytes_out, stats.bytesSent)
        return sample

    def _metrics(self, first: _Sample | None, last: _Sample | None) -> Metrics:
        if first is None or last is None:
            return Metrics(connected=False, seconds=0.0)
        seconds = last.at - first.at
        received = sum(r for r, _, _ in last.inbound.values())
        lost = sum(max(0, lo) for _, lo, _ in last.inbound.values())
        up_jitter = {kind: _ms(j, kind) for kind, (_, _, j) in last.inbound.items()}
        sent = sum(last.sent.values())
        down_lost = sum(max(0, lo) for lo, _, _ in last.remote.values())
        down_jitter = {kind: _ms(j, kind) for kind, (_, j, _) in last.remote.items()}
        rtcp = [rtt * 1000 for _, _, rtt in last.remote.values() if rtt is not None]
        video_in = last.inbound.get("video", (0, 0, 0))[0]
        audio_in = last.inbound.get("audio", (0, 0, 0))[0]
        frames = last.frames - first.frames
        return Metrics(
            connected=True,
            seconds=seconds,
            rtt_ms=statistics.median(self.rtts_ms) if self.rtts_ms else None,
            rtt_samples=len(self.rtts_ms),
            rtcp_rtt_ms=statistics.median(rtcp) if rtcp else None,
            upstream=Direction(
                loss_pct=_loss_pct(lost, received + lost),
                jitter_ms=_audio_first(up_jitter),
                kbps=_kbps(last.bytes_in - first.bytes_in, seconds),
            ),
            downstream=Direction(
                loss_pct=_loss_pct(down_lost, sent) if last.remote else None,
                jitter_ms=_audio_first(down_jitter),
                kbps=_kbps(last.bytes_out - first.bytes_out, seconds),
            ),
            video_received=video_in > 0 and self.counters.frames_in > 0,
            audio_received=audio_in > 0,
            video_fps=frames / seconds if frames and seconds > 0 else None,
            video_width=self.counters.width,
            video_height=self.counters.height,
            path=_path(selected_pair(self.pc)),
        )


def _path(pair: SelectedPair | None) -> str | None:
    if pair is None:
        return None
    return "relay" if pair.relayed else "direct"


def _configuration() -> RTCConfiguration:
    """STUN only (to learn the worker's public address behind NAT); never aiortc's default
    public server. The worker needs no TURN: the user's device relays if it must."""
    stun = [RTCIceServer(urls=url) for url in settings.VIDEO_STUN_URLS[:1]]
    return RTCConfiguration(iceServers=stun)
