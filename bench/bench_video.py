"""Video benchmark (issue "Video I", Performance): call set-up through our signalling beside two
aiortc peers connected directly, the signalling relay's latency (one process, and two processes
through Redis), and how many rooms one web process sets up at once with a p95 under 2 s.

Everything runs inside a network namespace that has only loopback (``tests/netns.py``; the
script re-executes itself there when it is not already inside), so no WebRTC packet and no
signalling frame can leave the machine: every ICE candidate is 127.0.0.1, PostgreSQL is reached
through its Unix socket, and Redis is a throwaway ``redis-server`` started in the namespace
(the host's is out of reach there). The app is the one the WebRTC tests run
(``tests/video/webrtc_support.py``), served with DEBUG off as in production
(``bench/bench_settings.py``; the tests' servers run with DEBUG on, whose debug cursor
times and keeps every statement): uvicorn on 127.0.0.1, a fresh migrated database
(PostgreSQL ``bench_video_live`` through the socket, from ``BENCH_VIDEO_DATABASE_URL``, default
``postgres://postgres@127.0.0.1:5432/bench_video``; ``sqlite`` there uses an SQLite file), with
psycopg's connection pool (``DATABASE_POOL=1``) and statements bound server-side and prepared
once per connection (``DATABASE_PREPARED_STATEMENTS=1``, the setting for a direct connection to
PostgreSQL; the environment's ``0`` runs it with client-side binding), as ``bench_booking.py``,
seeded with confirmed video bookings whose room is open now (real clock). TURN is off (no
``VIDEO_TURN_URLS``): the join answers ``ice_servers: []``, the same configuration as the direct
peers.

1. **Set-up** (``--calls``, 20): a therapist and a client (``video.client.VideoClient``, aiortc,
   160x120 video and silent audio), the steps of ``tests.video.webrtc_support.start_call``:
   the therapist is in the room (joined over REST, hello; not timed), then the client joins
   (REST), says hello and waits, the therapist admits it, the therapist offers, the client
   answers; the figure is from the client's join to the first decoded remote video frame at
   *both* ends (the later one; each end's, the phases' medians and the figure from the
   therapist's own join are reported too). Beside it, in the same run and alternating call by
   call, the same client code with the same tracks and ``iceServers=[]``, host 127.0.0.1, with
   offer and answer handed over in-process (``direct``): the floor set by aiortc itself
   (gathering, ICE checks, DTLS, the first encoded frame). Goal: ``setup_vs_direct`` <= 1.5.
2. **Relay latency**: two raw WebSocket clients (``websockets``, no aiortc) in a call; one sends a
   ``candidate`` (relayed as ``candidate``) or a ``media`` (told as ``peer-media``), the time is
   from just before the send to the other socket's receipt; directions and kinds alternate, one
   message in flight at a time, ``--relay-gap-ms`` apart. The servers of this part run with
   ``VIDEO_SIGNAL_RATE_PER_SECOND`` raised (``--relay-rate``, 100/s; the default is 20/s) so
   the pacing is what limits the rate, never the limiter. Measured on one process (in-memory
   channel layer) and on two processes sharing Redis (therapist on one, client on the other).
3. **Capacity**: rooms set up at once by one web process, at levels 1, 2, 4, 8 ... (``--levels``).
   At each level the therapists of N fresh rooms are in first (joined, hello; not timed), then
   the N clients arrive together and each room does the whole exchange with raw WebSocket
   clients: client join (REST), hello, waiting-list, admit, peer-joined, offer (a real aiortc
   SDP captured in part 1), answer (likewise), every candidate of those SDPs trickled as a
   browser does plus the end of candidates, both ways. A room's set-up is from its client's
   join to the moment both sides have everything. No media: media goes peer to peer and is no
   load on the server. The ramp stops at the first level whose p95 is 2 s or more or where a
   room fails, at the last level, or when ``--ramp-seconds`` are spent; the answer is the
   largest level under 2 s. The load generator shares the machine's cores with the server.

4. **Reconnect storms** (issue "Video II"): N rooms in a call (``--storm-levels``, 10, 25, 50,
   100), set up as in part 3 (not timed); then every socket of every room drops at once (a web
   process restarting, a network blip at a clinic) and every participant reconnects at once
   with its room token and resume token; a room is back when its new round is negotiated (the
   therapist's offer and candidates at the client, the answer and candidates at the therapist).
   The largest N with a p95 under 2 s, with the same stopping rules as part 3.

The machine's other load is not controlled: compare the ratios, and run more than once.
Prints one JSON line.

    python bench/bench_video.py [--calls 20] [--relay-samples 400] [--relay-gap-ms 10]
                                [--relay-rate 100] [--levels 1,2,4,8,16,32,64] [--ramp-seconds 120]
                                [--storm-levels 10,25,50,100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import netns  # noqa: E402 - after the path

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_video"
GOAL_RATIO = 1.5
CAPACITY_P95_S = 2.0
POLL_S = 0.002  # how often a first frame is looked for
TIMEOUT_S = 30.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(seconds: list[float]) -> dict[str, Any]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(percentile(ms, 0.95), 1),
        "max_ms": round(max(ms), 1),
    }


# --- 1. Set-up: through the signalling, and directly ------------------------------------------


async def first_video_frame(peer: Any, timeout: float = TIMEOUT_S) -> float:
    """The moment (perf_counter) ``peer`` has decoded its first remote video frame."""
    deadline = time.perf_counter() + timeout
    while peer.frames_received["video"] < 1:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{peer.name}: no video frame within {timeout} s")
        await asyncio.sleep(POLL_S)
    return time.perf_counter()


async def signalled_call(call: Any, base_url: str) -> dict[str, float]:
    """The therapist is in the room (joined, hello); then, timed: the client joins (REST) and
    says hello, waits, is admitted, the therapist offers and the client answers, until the
    first remote video frame at both ends. ``start_call`` (webrtc_support) does the same steps
    but cannot time them from the client's join."""
    from tests.video.webrtc_support import close_all
    from video.client import VideoClient

    therapist, client = VideoClient(name="therapist"), VideoClient(name="client")
    try:
        therapist_started = time.perf_counter()
        await therapist.join(base_url, call.therapist_token, call.booking)
        await therapist.connect()
        started = time.perf_counter()
        await client.join(base_url, call.client_token, call.booking, jurisdiction="US-NY")
        joined_rest = time.perf_counter()
        hello = await client.connect()
        assert hello["state"] == "waiting", hello
        said_hello = time.perf_counter()
        assert client.participant_id in await therapist.waiting_participants(1)
        assert client.participant_id is not None
        await therapist.admit(client.participant_id)
        # The therapist's reader makes its offer (aiortc gathers) before it files peer-joined.
        await asyncio.gather(therapist.wait_until_in_call(), client.wait_until_in_call())
        in_call = time.perf_counter()
        at_client, at_therapist = await asyncio.gather(
            first_video_frame(client), first_video_frame(therapist)
        )
    finally:
        await close_all(therapist, client)
    return {
        "setup": max(at_client, at_therapist) - started,
        "from_therapist_join": max(at_client, at_therapist) - therapist_started,
        "join_rest": joined_rest - started,
        "hello": said_hello - joined_rest,
        "admitted_and_offered": in_call - said_hello,
        "to_frames": max(at_client, at_therapist) - in_call,
        "client_frame": at_client - started,
        "therapist_frame": at_therapist - started,
    }


async def direct_call(captured: dict[str, str]) -> dict[str, float]:
    """The same client code, tracks and configuration (``iceServers=[]``), the offer and answer
    handed over in-process instead of through the server."""
    from tests.video.webrtc_support import close_all
    from video.client import JoinInfo, VideoClient

    offerer, answerer = VideoClient(name="direct-offerer"), VideoClient(name="direct-answerer")
    for peer, other in ((offerer, answerer), (answerer, offerer)):
        peer.info = JoinInfo(
            room="direct", token="", ws_url="", ice_servers=[], role="", mode="video", expires_at=""
        )

        async def deliver(type_: str, _to: VideoClient = other, **fields: Any) -> None:
            await _to._handle({"v": 1, "type": type_, **fields})

        peer.send = deliver  # type: ignore[method-assign]
    try:
        started = time.perf_counter()
        negotiated = asyncio.ensure_future(
            offerer._handle({"v": 1, "type": "peer-joined", "round": 1, "offerer": True})
        )
        at_answerer, at_offerer = await asyncio.gather(
            first_video_frame(answerer), first_video_frame(offerer)
        )
        await negotiated
        if not captured:
            assert offerer.pc is not None and answerer.pc is not None
            captured["offer"] = offerer.pc.localDescription.sdp
            captured["answer"] = answerer.pc.localDescription.sdp
    finally:
        await close_all(offerer, answerer)
    return {
        "setup": max(at_answerer, at_offerer) - started,
        "client_frame": at_answerer - started,
        "therapist_frame": at_offerer - started,
    }


async def setup_phase(app: Any, base_url: str, calls: int) -> tuple[dict[str, Any], dict]:
    captured: dict[str, str] = {}
    await direct_call(captured)  # warm-up: imports, codecs, the SDP for part 3
    await signalled_call(app.claim(), base_url)
    signalled: list[dict[str, float]] = []
    direct: list[dict[str, float]] = []
    for _ in range(calls):  # alternating: the machine's drift falls on both alike
        signalled.append(await signalled_call(app.claim(), base_url))
        direct.append(await direct_call(captured))

    def column(rows: list[dict[str, float]], key: str) -> list[float]:
        return [row[key] for row in rows]

    setup, floor = summary(column(signalled, "setup")), summary(column(direct, "setup"))
    figures = {
        "setup_p50_ms": setup["p50_ms"],
        "setup_p95_ms": setup["p95_ms"],
        "direct_p50_ms": floor["p50_ms"],
        "direct_p95_ms": floor["p95_ms"],
        "setup_vs_direct_p50": round(setup["p50_ms"] / floor["p50_ms"], 2),
        "setup_vs_direct_p95": round(setup["p95_ms"] / floor["p95_ms"], 2),
        "setup_detail": {
            "method": "therapist in the room; client's join -> first decoded remote video "
            "frame at both ends; direct: same client code, in-process offer/answer",
            "signalled": setup,
            "signalled_from_therapist_join": summary(column(signalled, "from_therapist_join")),
            "signalled_phases_p50_ms": {
                phase: summary(column(signalled, phase))["p50_ms"]
                for phase in ("join_rest", "hello", "admitted_and_offered", "to_frames")
            },
            "signalled_first_frame_at_client": summary(column(signalled, "client_frame")),
            "signalled_first_frame_at_therapist": summary(column(signalled, "therapist_frame")),
            "direct": floor,
            "direct_first_frame_at_answerer": summary(column(direct, "client_frame")),
            "direct_first_frame_at_offerer": summary(column(direct, "therapist_frame")),
        },
    }
    return figures, captured


# --- Raw signalling clients (parts 2 and 3) ---------------------------------------------------


class SignalFailed(Exception):
    """The server refused a message (``error``) or closed the socket."""


class RawSocket:
    """A signalling socket without aiortc: every message received is kept in ``messages``."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self.participant: str = ""
        self.token = ""  # the room token and socket URL, for a reconnect
        self.ws_url = ""
        self.closed = False
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        import websockets

        try:
            async for raw in self.ws:
                async with self._changed:
                    self.messages.append(json.loads(raw))
                    self._changed.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            async with self._changed:
                self.closed = True
                self._changed.notify_all()

    async def send(self, type_: str, **fields: Any) -> None:
        await self.ws.send(json.dumps({"v": 1, "type": type_, **fields}))

    async def wait(self, done: Callable[[], bool], timeout: float = TIMEOUT_S) -> None:
        """Until ``done()`` holds (checked on each message); ``SignalFailed`` on an ``error``
        message or a close."""

        async def until() -> None:
            async with self._changed:
                while True:
                    error = self.first("error")
                    if error is not None:
                        raise SignalFailed(f"error {error.get('code')} ({error.get('ref')})")
                    if done():
                        return
                    if self.closed:
                        raise SignalFailed(f"closed {self.ws.close_code}")
                    await self._changed.wait()

        await asyncio.wait_for(until(), timeout)

    def count(self, type_: str, since: int = 0) -> int:
        return sum(1 for m in self.messages[since:] if m.get("type") == type_)

    def first(self, type_: str) -> dict[str, Any] | None:
        return next((m for m in self.messages if m.get("type") == type_), None)

    async def close(self, *, leave: bool) -> None:
        with contextlib.suppress(Exception):
            if leave and not self.closed:
                await self.send("leave")
                await asyncio.wait_for(self._reader, 10)
        with contextlib.suppress(Exception):
            await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader


async def raw_open(
    base_url: str, token: str, booking: str, jurisdiction: str | None = None
) -> RawSocket:
    """Join over REST (``VideoClient.join``: no peer connection is made), open the socket, say
    hello and wait for ``joined``."""
    from video.client import VideoClient

    info = await VideoClient(name="raw").join(base_url, token, booking, jurisdiction=jurisdiction)
    return await raw_hello(info.ws_url, info.token)


async def raw_hello(ws_url: str, token: str, resume: str | None = None) -> RawSocket:
    """Open the room's socket, say hello (with a resume token to take a dropped place back)
    and wait for ``joined``."""
    import websockets
    from websockets.typing import Origin

    ws = await websockets.connect(
        ws_url,
        origin=Origin(f"http://{urlsplit(ws_url).netloc}"),
        open_timeout=TIMEOUT_S,
        max_size=2**20,
    )
    sock = RawSocket(ws)
    sock.token, sock.ws_url = token, ws_url
    await sock.send("hello", token=token, **({"resume": resume} if resume else {}))
    await sock.wait(lambda: sock.first("joined") is not None)
    joined = sock.first("joined")
    assert joined is not None
    sock.participant = joined["participant"]
    return sock


async def raw_reconnect(dropped: RawSocket) -> RawSocket:
    """The same participant back on a new socket with its room token and resume token."""
    joined = [m for m in dropped.messages if m.get("type") == "joined"][-1]
    return await raw_hello(dropped.ws_url, dropped.token, joined["resume"])


async def admit(therapist: RawSocket, client: RawSocket) -> None:
    def listed() -> bool:
        return any(
            entry.get("participant") == client.participant
            for m in therapist.messages
            if m.get("type") == "waiting-list"
            for entry in m.get("waiting", [])
        )

    await therapist.wait(listed)
    await therapist.send("admit", participant=client.participant)


def trickled_candidates(sdp: str) -> list[dict[str, Any]]:
    """The SDP's first media section's candidates as ``RTCIceCandidateInit``, as a browser
    trickles them."""
    lines = sdp.splitlines()
    mid, ufrag, found = "0", "", []
    in_media = False
    for line in lines:
        if line.startswith("m="):
            if in_media:
                break
            in_media = True
        elif in_media and line.startswith("a=mid:"):
            mid = line[len("a=mid:") :]
        elif line.startswith("a=ice-ufrag:") and not ufrag:
            ufrag = line[len("a=ice-ufrag:") :]
        elif in_media and line.startswith("a=candidate:"):
            found.append(line[2:])
    return [
        {"candidate": c, "sdpMid": mid, "sdpMLineIndex": 0, "usernameFragment": ufrag}
        for c in found
    ]


# --- 2. Relay latency -------------------------------------------------------------------------


async def relay_phase(
    call: Any, therapist_url: str, client_url: str, *, samples: int, gap: float
) -> dict[str, Any]:
    therapist = await raw_open(therapist_url, call.therapist_token, call.booking)
    client = await raw_open(client_url, call.client_token, call.booking, "US-NY")
    try:
        await admit(therapist, client)
        for sock in (therapist, client):
            await sock.wait(lambda s=sock: s.first("peer-joined") is not None)
        peer_joined = therapist.first("peer-joined")
        assert peer_joined is not None
        round_ = peer_joined["round"]
        candidate = {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"}
        latencies: dict[str, list[float]] = {"candidate": [], "media": []}
        warmup = 20
        for i in range(warmup + samples):
            kind = "candidate" if i % 2 == 0 else "media"
            sender, receiver = (therapist, client) if (i // 2) % 2 == 0 else (client, therapist)
            expected = "candidate" if kind == "candidate" else "peer-media"
            mark = len(receiver.messages)
            started = time.perf_counter()
            if kind == "candidate":
                await sender.send("candidate", round=round_, candidate=candidate)
            else:
                await sender.send("media", audio=bool(i % 4 == 1), video=True)
            await receiver.wait(lambda r=receiver, m=mark, e=expected: r.count(e, m) > 0)
            if i >= warmup:
                latencies[kind].append(time.perf_counter() - started)
            await asyncio.sleep(gap)
    finally:
        await asyncio.gather(therapist.close(leave=True), client.close(leave=True))
    return {
        "candidate": summary(latencies["candidate"]),
        "media": summary(latencies["media"]),
    }


# --- 3. Capacity ------------------------------------------------------------------------------


async def raw_room(
    call: Any, base_url: str, therapist: RawSocket, sdp: dict[str, str]
) -> tuple[float, RawSocket]:
    """One room's whole exchange with its therapist already in; seconds from the client's
    join until both sides have everything."""
    started = time.perf_counter()
    client = await raw_open(base_url, call.client_token, call.booking, "US-NY")
    await admit(therapist, client)
    await negotiate(therapist, client, sdp)
    return time.perf_counter() - started, client


async def negotiate(therapist: RawSocket, client: RawSocket, sdp: dict[str, str]) -> None:
    """A round as browsers play it: on ``peer-joined`` the therapist offers and trickles its
    candidates, the client answers and trickles its own; until each side has everything."""
    offer_candidates = trickled_candidates(sdp["offer"])
    answer_candidates = trickled_candidates(sdp["answer"])

    async def therapist_side() -> None:
        await therapist.wait(lambda: therapist.first("peer-joined") is not None)
        joined = therapist.first("peer-joined")
        assert joined is not None and joined["offerer"], joined
        round_ = joined["round"]
        await therapist.send("offer", round=round_, sdp=sdp["offer"])
        for candidate in [*offer_candidates, None]:
            await therapist.send("candidate", round=round_, candidate=candidate)
        await therapist.wait(
            lambda: (
                therapist.first("answer") is not None
                and therapist.count("candidate") >= len(answer_candidates) + 1
            )
        )

    async def client_side() -> None:
        await client.wait(lambda: client.first("offer") is not None)
        offer = client.first("offer")
        assert offer is not None
        round_ = offer["round"]
        await client.send("answer", round=round_, sdp=sdp["answer"])
        for candidate in [*answer_candidates, None]:
            await client.send("candidate", round=round_, candidate=candidate)
        await client.wait(lambda: client.count("candidate") >= len(offer_candidates) + 1)

    await asyncio.gather(therapist_side(), client_side())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (as bench_booking.py reads it)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def capacity_level(app: Any, server: Any, rooms: int, sdp: dict[str, str]) -> dict:
    base_url = server.base_url
    calls = [app.claim() for _ in range(rooms)]
    therapists = await asyncio.gather(
        *(raw_open(base_url, c.therapist_token, c.booking) for c in calls)
    )
    began, server_cpu, own_cpu = (
        time.perf_counter(),
        cpu_seconds(server.process.pid),
        time.process_time(),
    )
    outcomes = await asyncio.gather(
        *(
            asyncio.wait_for(raw_room(c, base_url, t, sdp), TIMEOUT_S)
            for c, t in zip(calls, therapists, strict=True)
        ),
        return_exceptions=True,
    )
    elapsed = time.perf_counter() - began
    server_cpu = cpu_seconds(server.process.pid) - server_cpu
    own_cpu = time.process_time() - own_cpu
    done = [o for o in outcomes if isinstance(o, tuple)]
    failures = [f"{type(o).__name__}: {o}"[:120] for o in outcomes if not isinstance(o, tuple)]
    await asyncio.gather(
        *(t.close(leave=True) for t in therapists), *(c.close(leave=True) for _, c in done)
    )
    times = [seconds for seconds, _ in done]
    level: dict[str, Any] = {"rooms": rooms, "failed": len(failures)}
    if times:
        figures = summary(times)
        level.update(p50_ms=figures["p50_ms"], p95_ms=figures["p95_ms"], max_ms=figures["max_ms"])
    level["wall_s"] = round(elapsed, 2)
    # The web process is one Python process (one core at most): its CPU per room bounds it.
    level["web_cpu_ms_per_room"] = round(server_cpu * 1000 / rooms, 1)
    level["web_cpu_busy"] = round(server_cpu / elapsed, 2)
    level["load_generator_cpu_ms_per_room"] = round(own_cpu * 1000 / rooms, 1)
    if failures:
        level["first_failure"] = failures[0]
    return level


async def ramp(
    levels: list[int], budget: float, level_at: Callable[[int], Awaitable[dict[str, Any]]]
) -> tuple[list[dict[str, Any]], int, str]:
    """Run ``level_at(n)`` for each level until one fails or has a p95 of 2 s or more, or the
    ``budget`` (seconds) is spent: the levels run, the largest under 2 s, why it stopped."""
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    best = 0
    stopped = "last level reached"
    for rooms in levels:
        if time.perf_counter() - started > budget:
            stopped = f"time budget ({budget:.0f} s) spent"
            break
        level = await level_at(rooms)
        results.append(level)
        if level["failed"]:
            stopped = f"{level['failed']} room(s) failed at {rooms}"
            break
        if level["p95_ms"] >= CAPACITY_P95_S * 1000:
            stopped = f"p95 >= {CAPACITY_P95_S:.0f} s at {rooms}"
            break
        best = rooms
    return results, best, stopped


async def capacity_phase(
    app: Any, server: Any, levels: list[int], sdp: dict[str, str], budget: float
) -> dict[str, Any]:
    results, best, stopped = await ramp(
        levels, budget, lambda rooms: capacity_level(app, server, rooms, sdp)
    )
    return {
        "method": "N rooms at once on one uvicorn process (in-memory layer), raw WebSocket "
        "clients, no media (peer to peer, not server load); client join -> offer, answer and "
        "every candidate received on both sides",
        "sdp_bytes": {"offer": len(sdp["offer"]), "answer": len(sdp["answer"])},
        "candidates_per_side": {
            "offer": len(trickled_candidates(sdp["offer"])) + 1,
            "answer": len(trickled_candidates(sdp["answer"])) + 1,
        },
        "levels": results,
        "max_rooms_p95_under_2s": best,
        "stopped": stopped,
    }


# --- 4. Reconnect storms ----------------------------------------------------------------------


async def storm_level(app: Any, server: Any, rooms: int, sdp: dict[str, str]) -> dict:
    """N rooms in a call (set up, not timed); then every socket of every room drops at once
    and every participant comes back at once with its resume token; a room is back when its
    new round is negotiated (both sides have everything)."""
    base_url = server.base_url
    calls = [app.claim() for _ in range(rooms)]
    therapists = await asyncio.gather(
        *(raw_open(base_url, c.therapist_token, c.booking) for c in calls)
    )
    rooms_up = await asyncio.gather(
        *(raw_room(c, base_url, t, sdp) for c, t in zip(calls, therapists, strict=True))
    )
    clients = [client for _, client in rooms_up]
    began, server_cpu = time.perf_counter(), cpu_seconds(server.process.pid)
    await asyncio.gather(*(sock.close(leave=False) for sock in [*therapists, *clients]))

    async def back(therapist: RawSocket, client: RawSocket) -> tuple[float, list[RawSocket]]:
        socks = list(await asyncio.gather(raw_reconnect(therapist), raw_reconnect(client)))
        await negotiate(socks[0], socks[1], sdp)
        return time.perf_counter() - began, socks

    outcomes = await asyncio.gather(
        *(
            asyncio.wait_for(back(t, c), TIMEOUT_S)
            for t, c in zip(therapists, clients, strict=True)
        ),
        return_exceptions=True,
    )
    elapsed = time.perf_counter() - began
    server_cpu = cpu_seconds(server.process.pid) - server_cpu
    done = [o for o in outcomes if isinstance(o, tuple)]
    failures = [f"{type(o).__name__}: {o}"[:120] for o in outcomes if not isinstance(o, tuple)]
    await asyncio.gather(*(sock.close(leave=True) for _, socks in done for sock in socks))
    level: dict[str, Any] = {"rooms": rooms, "sockets": 2 * rooms, "failed": len(failures)}
    if done:
        figures = summary([seconds for seconds, _ in done])
        level.update(p50_ms=figures["p50_ms"], p95_ms=figures["p95_ms"], max_ms=figures["max_ms"])
    level["wall_s"] = round(elapsed, 2)
    level["web_cpu_ms_per_room"] = round(server_cpu * 1000 / rooms, 1)
    if failures:
        level["first_failure"] = failures[0]
    return level


async def storm_phase(
    app: Any, server: Any, levels: list[int], sdp: dict[str, str], budget: float
) -> dict[str, Any]:
    results, best, stopped = await ramp(
        levels, budget, lambda rooms: storm_level(app, server, rooms, sdp)
    )
    return {
        "method": "N rooms in a call on one uvicorn process (in-memory layer); every socket "
        "drops at once, every participant reconnects at once with its resume token; a room "
        "is back when the new round's offer, answer and candidates reached both sides",
        "levels": results,
        "max_rooms_p95_under_2s": best,
        "stopped": stopped,
    }


# --- The run ----------------------------------------------------------------------------------


def loopback_ice() -> None:
    """As tests/video/conftest.py does: aioice offers 127.0.0.1 (it leaves loopback out) and
    retransmits STUN sooner, as aiortc's own tests do."""
    import aioice.ice
    import aioice.stun

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    aioice.stun.RETRY_MAX = 2
    aioice.stun.RETRY_RTO = 0.1


def database_environment() -> str:
    """The environment ``live_database`` reads, for the namespace: PostgreSQL through the
    socket (database ``bench_video_live``), or an SQLite file; which one, for the JSON."""
    url = os.environ.get("BENCH_VIDEO_DATABASE_URL", DEFAULT_URL)
    if not url.startswith("postgres"):
        os.environ.pop("DATABASE_URL", None)
        return "sqlite"
    os.environ["DATABASE_URL"] = netns.socket_database_url(url)
    os.environ["TEST_DATABASE_NAME"] = urlsplit(url).path.lstrip("/") or "bench_video"
    return "postgresql"


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from tests.video.webrtc_support import Coturn, live_app, run_redis

    levels = [int(n) for n in args.levels.split(",") if n.strip()]
    storm_levels = [int(n) for n in args.storm_levels.split(",") if n.strip()]
    database = database_environment()
    no_turn = Coturn(port=0, secret="unused", log=workdir / "no-turnserver.log")
    prepared = os.environ.get("DATABASE_PREPARED_STATEMENTS", "1")
    server_env = {
        "VIDEO_TURN_URLS": "",
        "DATABASE_POOL": "1",
        "DATABASE_PREPARED_STATEMENTS": prepared,
        "DJANGO_SETTINGS_MODULE": "bench_settings",  # DEBUG off, as in production
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'bench'}",
    }
    relay_env = {**server_env, "VIDEO_SIGNAL_RATE_PER_SECOND": str(args.relay_rate)}
    bookings = 2 + args.calls + 2 + sum(levels) + sum(storm_levels)
    gap = args.relay_gap_ms / 1000
    began = time.perf_counter()
    with live_app(workdir, no_turn, calls=bookings) as app:
        seeded = time.perf_counter() - began

        server = app.start_server(**server_env)
        setup, sdp = await setup_phase(app, server.base_url, args.calls)
        peer_connections = server.peer_connections()
        capacity = await capacity_phase(app, server, levels, sdp, args.ramp_seconds)
        storms = await storm_phase(app, server, storm_levels, sdp, args.ramp_seconds)
        app.stop_server(server)

        relay_server = app.start_server(**relay_env)
        one = await relay_phase(
            app.claim(),
            relay_server.base_url,
            relay_server.base_url,
            samples=args.relay_samples,
            gap=gap,
        )
        app.stop_server(relay_server)
        with run_redis(workdir) as redis_url:
            first = app.start_server(**relay_env, REDIS_URL=redis_url)
            second = app.start_server(**relay_env, REDIS_URL=redis_url)
            two = await relay_phase(
                app.claim(),
                first.base_url,
                second.base_url,
                samples=args.relay_samples,
                gap=gap,
            )
            app.stop_all()
    return {
        "bench": "video",
        "calls": args.calls,
        **setup,
        "goal_met": {
            "setup_vs_direct_p50_le_1_5": setup["setup_vs_direct_p50"] <= GOAL_RATIO,
            "setup_vs_direct_p95_le_1_5": setup["setup_vs_direct_p95"] <= GOAL_RATIO,
        },
        "server_made_peer_connections": peer_connections != "",
        "relay": {
            "method": "raw WebSocket clients in a call, one message in flight, "
            f"{args.relay_gap_ms} ms apart; send -> receipt at the other socket",
            "signal_rate_per_second": args.relay_rate,
            "signal_rate_note": "raised for these servers (default 20/s) so pacing, not the "
            "limiter, sets the rate",
            "one_process_in_memory": one,
            "two_processes_redis": two,
        },
        "capacity": capacity,
        "reconnect_storms": storms,
        "database": database,
        "database_pool": True,
        "database_prepared_statements": prepared == "1",
        "turn": False,
        "cpus": os.cpu_count(),
        "seed_s": round(seeded, 1),
        "elapsed_s": round(time.perf_counter() - began, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--relay-samples", type=int, default=400)
    parser.add_argument("--relay-gap-ms", type=float, default=10.0)
    parser.add_argument("--relay-rate", type=int, default=100)
    parser.add_argument("--levels", default="1,2,4,8,16,32,64")
    parser.add_argument("--ramp-seconds", type=float, default=120.0)
    parser.add_argument("--storm-levels", default="10,25,50,100")
    args = parser.parse_args()
    if not netns.loopback_only():
        # WebRTC traffic stays on loopback: run again inside a namespace that has only ``lo``.
        return netns.outside([sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]])

    loopback_ice()

    async def bounded(workdir: Path) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        # Joins go over REST on threads (VideoClient.join): enough for every room of a level.
        loop.set_default_executor(ThreadPoolExecutor(max_workers=128))
        return await run(args, workdir)

    with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp:
        result = asyncio.run(bounded(Path(tmp)))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
