"""A Python peer for video rooms: aiortc behind the join API and the signalling protocol.

Used by the tests, bots and benchmarks (docs/video.md, "Python client")::

    client = VideoClient()
    await client.join(api_base, access_token, booking_id, jurisdiction="US-NY")
    await client.connect()              # hello; joined (waiting or in_call)
    await client.wait_until_in_call()   # a client: once the therapist admits it
    await client.wait_for_frames(video=30, audio=30)
    await client.leave()
    await client.close()

It negotiates as the server says (``peer-joined`` names the offerer of each round): it offers
with every candidate in the SDP (aiortc gathers before ``setLocalDescription`` returns), answers
an offer, and takes trickled candidates from a browser. When its media path fails (a network
change, a laptop waking up) it asks for a new round (``restart``); aiortc has no ICE restart,
so each round gets a new RTCPeerConnection. A therapist prepares its next offer (a peer
connection with its tracks, candidates gathered, TURN allocations made) as soon as someone is
in the waiting room, so admitting them does not wait for the gathering. Media are synthetic (a
small blank video, silent audio); what arrives is counted in ``frames_received``. For
attendance it reports its peer connection's state (``connection``: connected, and disconnected
when the connection it reported fails or closes); the server stamps the time.

It always passes an explicit RTCConfiguration (the join's ICE servers, or none): never aiortc's
default public STUN server. ``relay_only`` gathers and uses relayed (TURN) candidates only.
Logs name message types, rounds and states, never an SDP, a candidate or a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import websockets
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy, RTCIceTransportPolicy
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.sdp import candidate_from_sdp
from av import VideoFrame
from websockets.typing import Origin

from video.ice import SelectedPair, peer_connection, selected_pair

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
RESTART_INTERVAL_S = 1.0  # the least time between two restarts asked by one client
CLOCK_RATES = {"audio": 48_000, "video": 90_000}  # RTP clocks of Opus and the video codecs
JOIN_PATH = "/api/v1/video/rooms/{booking_id}/join"


class JoinRefused(Exception):
    """The join API said no: ``status`` and the problem document."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"join refused: {status} {problem.get('code', '')}")
        self.status = status
        self.problem = problem


class SocketClosed(Exception):
    """The signalling socket closed before the expected message: ``code``."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"socket closed: {code} {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class JoinInfo:
    room: str
    token: str
    ws_url: str
    ice_servers: list[dict[str, Any]]
    role: str
    mode: str
    expires_at: str


class SmallVideoTrack(VideoStreamTrack):
    """Blank 160x120 frames at aiortc's 30 fps clock: cheap to encode."""

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=160, height=120)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.pts = pts
        frame.time_base = fractions.Fraction(time_base.numerator, time_base.denominator)
        return frame


def ice_configuration(
    ice_servers: list[dict[str, Any]], *, relay_only: bool = False
) -> RTCConfiguration:
    """The join's RTCIceServer dictionaries as aiortc's configuration (aiortc uses the first
    STUN and the first UDP/TCP TURN URL, with password credentials)."""
    servers = [
        RTCIceServer(
            urls=server["urls"],
            username=server.get("username"),
            credential=server.get("credential"),
        )
        for server in ice_servers
    ]
    return RTCConfiguration(
        iceServers=servers,
        iceTransportPolicy=RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL,
    )


def http_post(url: str, token: str | None, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST JSON (with the access token as Bearer when given): the status and the JSON answer."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(  # noqa: S310 - the caller's API base
        url, data=json.dumps(body).encode(), method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            problem = json.loads(raw) if raw else {}
        except ValueError:
            problem = {"detail": raw[:200].decode(errors="replace")}
        return error.code, problem


class VideoClient:
    """One participant: the join, the socket, and one RTCPeerConnection per round."""

    def __init__(
        self,
        *,
        name: str = "peer",
        relay_only: bool = False,
        audio: bool = True,
        video: bool = True,
        outgoing_sdp: Callable[[str], str] | None = None,
    ) -> None:
        self.name = name  # for logs: never a person's name
        self.relay_only = relay_only
        self.send_audio = audio
        self.send_video = video
        # A hook on every SDP before it is sent (tests tamper with it).
        self.outgoing_sdp = outgoing_sdp
        self.info: JoinInfo | None = None
        self.participant_id: str | None = None
        self.role: str | None = None
        self.state: str | None = None
        self.resume: str | None = None
        self.round: int | None = None
        self.peer: dict[str, Any] | None = None
        self.pc: RTCPeerConnection | None = None
        self._prepared: asyncio.Task[RTCPeerConnection] | None = None
        self._reported_pc: RTCPeerConnection | None = None  # the one reported connected
        self._last_restart = float("-inf")
        self.frames_received: dict[str, int] = {"audio": 0, "video": 0}
        # Frames per media section (its mid) of the current round: the camera's and, when the
        # therapist shares a screen, the shared screen's (``share`` names its mid).
        self.frames_by_mid: dict[str, int] = {}
        self.shared_mid: str | None = None  # the mid of the therapist's shared screen, if any
        self.video_size: tuple[int, int] | None = None  # of the last video frame received
        self._bytes_at: tuple[Any, float, int, int] | None = None  # pc, time, in, out
        self.messages: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self._closed = False
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._consumers: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Condition()

    # --- REST -------------------------------------------------------------------------------

    async def join(
        self,
        api_base: str,
        access_token: str,
        booking_id: str,
        jurisdiction: str | None = None,
    ) -> JoinInfo:
        """``POST /api/v1/video/rooms/{booking_id}/join``; ``JoinRefused`` on any refusal."""
        url = api_base.rstrip("/") + JOIN_PATH.format(booking_id=booking_id)
        body = {"jurisdiction": jurisdiction} if jurisdiction else {}
        status, data = await asyncio.to_thread(http_post, url, access_token, body)
        if status != 200:
            logger.info("%s: join refused (%s)", self.name, status)
            raise JoinRefused(status, data)
        ws_url = data.get("ws_url") or self._ws_url_from(api_base, data["room"])
        self.info = JoinInfo(
            room=data["room"],
            token=data["token"],
            ws_url=ws_url,
            ice_servers=list(data.get("ice_servers") or []),
            role=data.get("role", ""),
            mode=data.get("mode", "video"),
            expires_at=data.get("expires_at", ""),
        )
        return self.info

    @staticmethod
    def _ws_url_from(api_base: str, room: str) -> str:
        parts = urlsplit(api_base)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}/ws/video/{room}/"

    # --- The socket -------------------------------------------------------------------------

    async def connect(
        self, *, ws_url: str | None = None, token: str | None = None, timeout: float = 15
    ) -> dict[str, Any]:
        """Open the socket, send ``hello`` (with the resume token when there is one) and wait
        for ``joined``; ``SocketClosed`` when the server closes instead."""
        assert self.info is not None, "join first"
        url = ws_url or self.info.ws_url
        # The app checks Origin (channels' AllowedHostsOriginValidator refuses a socket without
        # one): send the socket's own origin, as the reference page on that host does.
        parts = urlsplit(url)
        origin = f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"
        self._ws = await websockets.connect(
            url, origin=Origin(origin), open_timeout=timeout, max_size=2**20
        )
        self.close_code = None
        self._closed = False
        hello: dict[str, Any] = {"token": token or self.info.token}
        if self.resume:
            hello["resume"] = self.resume
        since = len(self.messages)
        await self.send("hello", **hello)
        self._reader = asyncio.create_task(self._read(), name=f"{self.name}-reader")
        return await self.wait_for("joined", timeout=timeout, since=since)

    async def send(self, type_: str, **fields: Any) -> None:
        if type_ not in {"hello", "candidate"}:
            logger.debug("%s: send %s", self.name, type_)
        await self._ws.send(json.dumps({"v": PROTOCOL_VERSION, "type": type_, **fields}))

    async def _read(self) -> None:
        try:
            async for raw in self._ws:
                message = json.loads(raw)
                try:
                    await self._handle(message)
                except Exception:
                    logger.exception("%s: handling %s failed", self.name, message.get("type"))
                    raise
                async with self._changed:
                    self.messages.append(message)
                    self._changed.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self._ws.close_code
            self._closed = True
            async with self._changed:
                self._changed.notify_all()

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        logger.debug("%s: received %s", self.name, kind)
        if kind == "joined":
            self.participant_id = message.get("participant")
            self.role = message.get("role")
            self.state = message.get("state")
            self.resume = message.get("resume") or self.resume
            self._reported_pc = None  # a new socket: the server closed what the last one held
        elif kind == "admitted":
            self.state = "in_call"
        elif kind == "waiting-list":
            if message.get("waiting") and self._prepared is None:
                self._prepared = asyncio.create_task(self._prepared_offer())
        elif kind == "peer-joined":
            self.state = "in_call"
            self.peer = message.get("peer")
            self.round = int(message["round"])
            if message.get("offerer"):
                await self._offer()
            else:
                await self._new_peer_connection()
        elif kind == "offer":
            await self._answer(message)
        elif kind == "answer":
            if self.pc is not None and message.get("round") == self.round:
                await self.pc.setRemoteDescription(
                    RTCSessionDescription(sdp=message["sdp"], type="answer")
                )
        elif kind == "candidate":
            await self._remote_candidate(message)
        elif kind == "share":
            started = message.get("state") == "started"
            self.shared_mid = str(message["mid"]) if started else None
        elif kind == "error":
            logger.info("%s: error %s (%s)", self.name, message.get("code"), message.get("ref"))
            self.errors.append(message)
        elif kind in {"peer-left", "ended"}:
            logger.info("%s: %s (%s)", self.name, kind, message.get("reason"))
            self.shared_mid = None
            await self._close_peer_connection()  # nobody to restart with

    async def wait_for(
        self,
        type_: str,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        *,
        timeout: float = 15,
        since: int = 0,
    ) -> dict[str, Any]:
        """The first message of ``type_`` (from index ``since``) that ``predicate`` accepts;
        ``SocketClosed`` if the socket closes first, TimeoutError after ``timeout``."""

        def found() -> dict[str, Any] | None:
            for message in self.messages[since:]:
                if message.get("type") == type_ and (predicate is None or predicate(message)):
                    return message
            return None

        async def wait() -> dict[str, Any]:
            async with self._changed:
                while True:
                    message = found()
                    if message is not None:
                        return message
                    if self._closed:
                        raise SocketClosed(self.close_code)
                    await self._changed.wait()

        return await asyncio.wait_for(wait(), timeout)

    async def wait_closed(self, *, timeout: float = 15) -> int | None:
        """Wait for the server to close the socket; its close code."""
        assert self._reader is not None
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.close_code

    async def wait_until_in_call(self, *, timeout: float = 15) -> None:
        await self.wait_for("peer-joined", timeout=timeout)

    async def waiting_participants(self, count: int = 1, *, timeout: float = 15) -> list[str]:
        """A therapist's view: the ids of the first ``waiting-list`` naming ``count`` people."""
        message = await self.wait_for(
            "waiting-list", lambda m: len(m.get("waiting", [])) >= count, timeout=timeout
        )
        return [entry["participant"] for entry in message["waiting"]]

    async def admit(self, participant_id: str) -> None:
        await self.send("admit", participant=participant_id)

    async def leave(self, *, timeout: float = 10) -> None:
        """Leave for good (the room token is spent): the server closes the socket (1000); then
        the call is closed here."""
        if self._ws is not None and not self._closed:
            await self.send("leave")
            with contextlib.suppress(TimeoutError):
                await self.wait_closed(timeout=timeout)
        await self.close()

    async def drop(self) -> None:
        """Close the socket without leaving (the place is kept for ``VIDEO_RESUME_SECONDS``)."""
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader

    async def close(self) -> None:
        await self.drop()
        await self._close_peer_connection()
        prepared, self._prepared = self._prepared, None
        if prepared is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await (await prepared).close()

    # --- Negotiation ------------------------------------------------------------------------

    async def _close_peer_connection(self) -> None:
        for task in self._consumers:
            task.cancel()
        self._consumers.clear()
        pc, self.pc = self.pc, None  # before closing: its state changes are not a failure
        if pc is not None:
            await pc.close()

    async def _new_peer_connection(self) -> None:
        """A fresh RTCPeerConnection for a new round (aiortc cannot restart ICE)."""
        await self._close_peer_connection()
        self.pc = self._peer_connection()

    def _peer_connection(self) -> RTCPeerConnection:
        assert self.info is not None
        configuration = ice_configuration(self.info.ice_servers, relay_only=self.relay_only)
        # Every section on one transport from the start. With aiortc's default (balanced), a
        # second video section in a round's first offer (a screen the therapist shared before
        # the call) gets the camera's own transport, which BUNDLE then discards: that section
        # never receives, and its packets go to the camera's receiver.
        configuration.bundlePolicy = RTCBundlePolicy.MAX_BUNDLE
        pc = peer_connection(configuration)

        self.frames_by_mid = {}

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            transceivers = pc.getTransceivers()
            mid = next((t.mid for t in transceivers if t.receiver.track is track), None)
            first = next(t for t in transceivers if t.kind == track.kind)
            task = asyncio.create_task(self._count(track, mid, call=first.receiver.track is track))
            self._consumers.add(task)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            logger.info("%s: connection %s", self.name, pc.connectionState)
            # aiortc has no "disconnected": a lost path is "failed", or "closed" when the
            # lapsed consent closed the transports first (a peer connection we close ourselves
            # is no longer ``self.pc`` by then).
            await self._report_connection(pc)  # before a restart: the time is the drop's
            if pc.connectionState in ("failed", "closed") and pc is self.pc:
                await self._restart(self.round)
            async with self._changed:
                self._changed.notify_all()

        return pc

    async def _report_connection(self, pc: RTCPeerConnection) -> None:
        """Attendance: ``connection`` connected when the current peer connection connects,
        disconnected when the one reported connected fails or closes (not sent once the
        socket has gone: the server closed the interval when it went)."""
        if pc.connectionState == "connected" and pc is self.pc:
            self._reported_pc, state = pc, "connected"
        elif pc.connectionState in ("failed", "closed") and pc is self._reported_pc:
            self._reported_pc, state = None, "disconnected"
        else:
            return
        if self._ws is not None and not self._closed:
            with contextlib.suppress(websockets.ConnectionClosed):
                await self.send("connection", state=state)

    def _add_tracks(self, pc: RTCPeerConnection) -> None:
        if self.send_audio:
            pc.addTrack(AudioStreamTrack())
        else:
            pc.addTransceiver("audio", direction="recvonly")
        if self.send_video and (self.info is None or self.info.mode != "audio"):
            pc.addTrack(SmallVideoTrack())
        elif self.info is None or self.info.mode != "audio":
            pc.addTransceiver("video", direction="recvonly")

    def _outgoing(self, sdp: str) -> str:
        return self.outgoing_sdp(sdp) if self.outgoing_sdp is not None else sdp

    async def _restart(self, round_: int | None) -> None:
        """The media path of ``round_`` failed (a network change, a sleeping laptop): ask the
        server for a new round, at most once per ``RESTART_INTERVAL_S``. Both sides may ask;
        the server makes one new round (the later request is ``stale_round``). aiortc cannot
        restart ICE: the new round gets a new peer connection."""
        if round_ is None or self._ws is None or self._closed:
            return
        wait = self._last_restart + RESTART_INTERVAL_S - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
            if round_ != self.round or self._closed:
                return  # the other side restarted meanwhile, or we are gone
        self._last_restart = time.monotonic()
        logger.info("%s: media path failed in round %s: restart", self.name, round_)
        await self.send("restart", round=round_)

    async def _prepared_offer(self) -> RTCPeerConnection:
        """A peer connection with our tracks and its offer set (aiortc gathers every candidate
        before ``setLocalDescription`` returns)."""
        pc = self._peer_connection()
        self._add_tracks(pc)
        await pc.setLocalDescription(await pc.createOffer())
        return pc

    async def _offer(self) -> None:
        """Offer in this round: the prepared offer if there is one, else a new one."""
        await self._close_peer_connection()
        prepared, self._prepared = self._prepared, None
        self.pc = await (prepared if prepared is not None else self._prepared_offer())
        await self.send("offer", round=self.round, sdp=self._outgoing(self.pc.localDescription.sdp))

    async def _answer(self, message: dict[str, Any]) -> None:
        """Answer the round's offer, or a second offer of the same round (the therapist
        started or stopped sharing a screen) on the same peer connection: aiortc takes a
        re-offer that adds a media section, and a new connection would not match the browser's
        running ICE and DTLS."""
        round_ = int(message["round"])
        renegotiation = self.pc is not None and round_ == self.round
        self.round = round_
        if self.pc is None or (self.pc.remoteDescription is not None and not renegotiation):
            await self._new_peer_connection()
        assert self.pc is not None
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=message["sdp"], type="offer"))
        self._add_tracks_for_answer()
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self.send(
            "answer", round=self.round, sdp=self._outgoing(self.pc.localDescription.sdp)
        )

    def _add_tracks_for_answer(self) -> None:
        """Attach our sources to the call's first audio and video sections the offer created,
        once: a renegotiation keeps them, and another video section (a shared screen) only
        receives."""
        assert self.pc is not None
        transceivers = self.pc.getTransceivers()
        for kind, wanted, source in (
            ("audio", self.send_audio, AudioStreamTrack),
            ("video", self.send_video, SmallVideoTrack),
        ):
            first = next((t for t in transceivers if t.kind == kind), None)
            if wanted and first is not None and first.sender.track is None:
                first.sender.replaceTrack(source())
                first.direction = "sendrecv"

    async def _remote_candidate(self, message: dict[str, Any]) -> None:
        if self.pc is None or message.get("round") != self.round:
            return
        init = message.get("candidate")
        if not init or not init.get("candidate"):
            await self.pc.addIceCandidate(None)  # end of candidates
            return
        line = init["candidate"]
        candidate = candidate_from_sdp(
            line.split(":", 1)[1] if line.startswith("candidate:") else line
        )
        if self.relay_only and candidate.type != "relay":
            return
        candidate.sdpMid = init.get("sdpMid")
        candidate.sdpMLineIndex = init.get("sdpMLineIndex")
        await self.pc.addIceCandidate(candidate)

    async def _count(self, track: MediaStreamTrack, mid: str | None, *, call: bool) -> None:
        """Count a remote track's frames: ``frames_received`` and ``video_size`` are the call's
        own audio and video (its first sections), ``frames_by_mid`` every section's."""
        counted = 0
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            counted += 1
            if mid is not None:
                self.frames_by_mid[mid] = self.frames_by_mid.get(mid, 0) + 1
            if call:
                if isinstance(frame, VideoFrame):
                    self.video_size = (frame.width, frame.height)
                self.frames_received[track.kind] += 1
            if counted % 10 == 0:
                async with self._changed:
                    self._changed.notify_all()

    # --- Call quality ------------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        """The ``stats`` message's fields, measured on the current peer connection: round-trip
        time (the peer's RTCP receiver reports), the fraction of packets lost, audio jitter,
        bitrates since the last call, the last received video frame's size, and whether media
        goes through TURN. Never an address (docs/video.md, "Call quality")."""
        pc = self.pc
        assert pc is not None, "not in a call"
        values = list((await pc.getStats()).values())
        now = time.monotonic()
        rtts = [
            s.roundTripTime
            for s in values
            if s.type == "remote-inbound-rtp" and s.roundTripTime is not None  # before RTCP
        ]
        inbound = [s for s in values if s.type == "inbound-rtp"]
        received = sum(s.packetsReceived for s in inbound)
        lost = sum(max(0, s.packetsLost) for s in inbound)
        jitters = [s.jitter / CLOCK_RATES[s.kind] * 1000 for s in inbound if s.kind in CLOCK_RATES]
        transports = [s for s in values if s.type == "transport"]
        bytes_in = sum(t.bytesReceived for t in transports)
        bytes_out = sum(t.bytesSent for t in transports)
        rate_in = rate_out = None
        if self._bytes_at is not None and self._bytes_at[0] is pc and now > self._bytes_at[1]:
            _, then, before_in, before_out = self._bytes_at
            rate_in = max(0.0, (bytes_in - before_in) * 8 / 1000 / (now - then))
            rate_out = max(0.0, (bytes_out - before_out) * 8 / 1000 / (now - then))
        self._bytes_at = (pc, now, bytes_in, bytes_out)
        pair = self.selected_pair()
        return {
            "rtt_ms": max(rtts) * 1000 if rtts else None,
            "loss": lost / (received + lost) if received + lost else None,
            "jitter_ms": max(jitters) if jitters else None,
            "bitrate_in_kbps": rate_in,
            "bitrate_out_kbps": rate_out,
            "width": self.video_size[0] if self.video_size else None,
            "height": self.video_size[1] if self.video_size else None,
            "relay": pair is not None and pair.relayed,
        }

    async def report_stats(self) -> dict[str, Any]:
        """Send ``stats`` (a client in a call does every ``VIDEO_STATS_INTERVAL_SECONDS``)."""
        fields = await self.stats()
        await self.send("stats", **fields)
        return fields

    # --- What tests and bots look at --------------------------------------------------------

    @property
    def connection_state(self) -> str:
        return self.pc.connectionState if self.pc is not None else "new"

    def _dtls(self) -> RTCDtlsTransport | None:
        if self.pc is None:
            return None
        for transceiver in self.pc.getTransceivers():
            transport = transceiver.receiver.transport
            if transport is not None:
                return transport
        return None

    def dtls_state(self) -> str:
        transport = self._dtls()
        return transport.state if transport is not None else "new"

    def selected_pair(self) -> SelectedPair | None:
        """The candidate pair the media transport sends on, once ICE has chosen one."""
        return selected_pair(self.pc)

    async def wait_until(
        self, condition: Callable[[], bool], *, timeout: float = 30, what: str = "condition"
    ) -> None:
        """Wait (bounded) until ``condition()`` holds; checked on every message, state change
        and tenth frame, and at least every 0.2 s."""

        async def wait() -> None:
            while not condition():
                async with self._changed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), 0.2)

        try:
            await asyncio.wait_for(wait(), timeout)
        except TimeoutError as exc:
            raise TimeoutError(f"{self.name}: no {what} within {timeout} s") from exc

    async def wait_for_frames(self, *, audio: int = 0, video: int = 0, timeout: float = 30) -> None:
        await self.wait_until(
            lambda: (
                self.frames_received["audio"] >= audio and self.frames_received["video"] >= video
            ),
            timeout=timeout,
            what=f"{audio} audio and {video} video frames",
        )

    async def wait_for_dtls(self, *states: str, timeout: float = 30) -> str:
        await self.wait_until(
            lambda: self.dtls_state() in states, timeout=timeout, what=f"DTLS {states}"
        )
        return self.dtls_state()
