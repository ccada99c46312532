"""Pre-call benchmark (issue "Video II", Performance): how many concurrent pre-call echo tests
one media worker carries at its cap (320x240 at 15 fps) with frame delivery of at least 90 %,
and the CPU each test costs. Goal: 10 or more on one core.

Everything runs inside a network namespace that has only loopback (``tests/netns.py``; the
script re-executes itself there), as ``bench_video.py`` does: every ICE candidate is 127.0.0.1.
The app is the one the WebRTC tests run (``tests/video/webrtc_support.py``): a migrated, seeded
database (an SQLite file; ``BENCH_PRECALL_DATABASE_URL`` names a PostgreSQL to use instead,
reached through its socket), a Redis started in the namespace, one web process (uvicorn) with
``VIDEO_PRECALL_MEDIA_WORKER=channels`` and one ``manage.py run_media_worker`` process, pinned
to one CPU (``sched_setaffinity``: its encoder threads share that core) with its test cap
raised out of the way (``VIDEO_PRECALL_MAX_TESTS``) so that CPU is the limit measured. The load
generator (this process), the web process and Redis are kept off that CPU when the machine has
another.

At each level N (``--levels``), N users start a test each at once (``video.precall.client``:
REST start, offer, answer) and run it for ``--seconds``. Each sends 320x240 video at 15 fps and
silent audio (Opus). The video is pre-encoded VP8 (a moving pattern, 30 frames from a
keyframe, looped): the generator packetizes instead of encoding, so it stays lighter than the
worker, which decodes, scales if needed and encodes again every frame it sends back. Figures:

- ``delivery``: video frames decoded back at the users over frames they sent (summed; ``min``
  is the worst test's), counted until each test's report arrives;
- the worker's CPU time (user + system, from /proc) over the level: as a share of its core
  over the level's wall time (set-up and closing included), per test in seconds, and
  ``cpu_per_test_pct``: a test's CPU time over its measured seconds (set-up included), the
  share of a core one test holds;
- the echo's own report of what arrived (``video_fps``, upstream kbps) and the verdicts;
- ``baseline``: the worker idle for 3 s (its CPU with no test) before the first level;
- ``video_only``: after the ramp, 6 tests with the same video and no sound (what sound costs).

The ramp stops after the first level whose delivery is under 90 % or where a test did not
complete; the answer is the largest level at or above 90 %. Prints one JSON line.

    python bench/bench_precall.py [--levels 1,2,4,6,8,10,12,14,16,20,24] [--seconds 12]
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import netns  # noqa: E402 - after the path

WIDTH, HEIGHT, FPS = 320, 240, 15
GOAL_TESTS = 10
VIDEO_ONLY_TESTS = 6
DELIVERY_GOAL = 0.9
TICKS = os.sysconf("SC_CLK_TCK")


def loopback_ice() -> None:
    """As tests/video/conftest.py does: aioice offers 127.0.0.1 (it leaves loopback out)."""
    import aioice.ice
    import aioice.stun

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    aioice.stun.RETRY_MAX = 2
    aioice.stun.RETRY_RTO = 0.1


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def encoded_pattern() -> list[bytes]:
    """30 VP8 frames of the client's moving pattern, the first a keyframe: a loop any decoder
    can follow (every 30th frame it is given is a keyframe)."""
    import av
    from av import VideoFrame

    from video.precall.client import PATTERN_FRAMES, _pattern

    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    codec.time_base = fractions.Fraction(1, 90_000)
    codec.framerate = FPS
    codec.gop_size = PATTERN_FRAMES
    codec.bit_rate = 300_000
    chroma = bytes([128]) * ((WIDTH // 2) * (HEIGHT // 2))
    packets = []
    for index, luma in enumerate(_pattern(WIDTH, HEIGHT)):
        frame = VideoFrame(width=WIDTH, height=HEIGHT)
        frame.planes[0].update(luma)
        frame.planes[1].update(chroma)
        frame.planes[2].update(chroma)
        frame.pts = index * 90_000 // FPS
        frame.time_base = fractions.Fraction(1, 90_000)
        packets += codec.encode(frame)
    packets += codec.encode(None)
    assert len(packets) == PATTERN_FRAMES and packets[0].is_keyframe
    return [bytes(packet) for packet in packets]


def encoded_camera(encoded: list[bytes]) -> Any:
    """A ``PatternVideoTrack`` that sends the pre-encoded frames (aiortc packetizes them)."""
    import av

    from video.precall.client import PatternVideoTrack

    class EncodedCamera(PatternVideoTrack):
        async def recv(self) -> Any:  # type: ignore[override]
            pts = await self.pace()
            packet = av.Packet(encoded[self.frames_sent % len(encoded)])
            packet.pts = pts
            packet.time_base = fractions.Fraction(1, 90_000)
            self.frames_sent += 1
            return packet

    return EncodedCamera(width=WIDTH, height=HEIGHT, fps=FPS)


async def one_test(
    base_url: str, token: str, seconds: int, encoded: list[bytes], audio: bool
) -> dict[str, Any]:
    from video.precall.client import PrecallClient, PrecallRefused

    client = PrecallClient(camera=encoded_camera(encoded), audio=audio)
    try:
        await client.start(base_url, token, seconds=seconds)
        await client.offer()
        report = await client.wait_for_report(timeout=seconds + 40)
        return {
            "sent": client.frames_sent,
            "received": client.frames_received["video"],
            "report": report,
        }
    except PrecallRefused as refused:
        code = refused.problem.get("code")
        return {"sent": 0, "received": 0, "error": f"{refused.status} {code}"}
    except Exception as exc:  # noqa: BLE001 - a failed test is a figure, not a crash
        return {"sent": client.frames_sent, "received": 0, "error": type(exc).__name__}
    finally:
        await client.close()


async def level(
    n: int,
    base_url: str,
    tokens: list[str],
    worker_pid: int,
    seconds: int,
    encoded: list[bytes],
    audio: bool = True,
) -> dict[str, Any]:
    began, cpu_began = time.perf_counter(), cpu_seconds(worker_pid)
    mine_began = time.process_time()
    results = await asyncio.gather(
        *(one_test(base_url, token, seconds, encoded, audio) for token in tokens)
    )
    wall = time.perf_counter() - began
    cpu = cpu_seconds(worker_pid) - cpu_began
    sent = sum(r["sent"] for r in results)
    received = sum(r["received"] for r in results)
    completed = [r for r in results if r.get("report", {}).get("reason") == "completed"]
    per_test = [r["received"] / r["sent"] for r in results if r["sent"]]
    reports = [r["report"]["metrics"] for r in completed]
    fps = [m["video_fps"] for m in reports if m.get("video_fps") is not None]
    kbps = [m["upstream"]["kbps"] for m in reports if m["upstream"].get("kbps") is not None]
    return {
        "tests": n,
        "completed": len(completed),
        "errors": sorted({r["error"] for r in results if "error" in r}),
        "delivery": round(received / sent, 3) if sent else 0.0,
        "delivery_min": round(min(per_test), 3) if per_test else 0.0,
        "frames_sent": sent,
        "frames_back": received,
        "worker_cpu_share_of_core": round(cpu / wall, 2),
        "worker_cpu_s_per_test": round(cpu / n, 2),
        # A test's CPU time over its measured seconds: the share of a core one test holds.
        "cpu_per_test_pct": round(100 * cpu / n / seconds, 1),
        "echo_saw_video_fps_median": round(statistics.median(fps), 1) if fps else None,
        "echo_saw_upstream_kbps_median": round(statistics.median(kbps), 1) if kbps else None,
        "verdicts": {
            v: sum(1 for r in completed if r["report"]["verdict"] == v)
            for v in ("good", "fair", "poor")
        },
        "generator_cpu_share": round((time.process_time() - mine_began) / wall, 2),
        "wall_s": round(wall, 1),
    }


def database_environment() -> str:
    url = os.environ.get("BENCH_PRECALL_DATABASE_URL", "sqlite")
    if not url.startswith("postgres"):
        os.environ.pop("DATABASE_URL", None)
        return "sqlite"
    os.environ["DATABASE_URL"] = netns.socket_database_url(url)
    os.environ["TEST_DATABASE_NAME"] = urlsplit(url).path.lstrip("/") or "bench_precall"
    return "postgresql"


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from tests.video.webrtc_support import Coturn, live_app, run_redis

    levels = [int(n) for n in args.levels.split(",") if n.strip()]
    database = database_environment()
    cpus = sorted(os.sched_getaffinity(0))
    worker_cpu, others = cpus[0], cpus[1:] or cpus[:1]
    os.sched_setaffinity(0, set(others))  # the servers started from here inherit it
    encoded = encoded_pattern()
    no_turn = Coturn(port=0, secret="unused", log=workdir / "no-turnserver.log")
    began = time.perf_counter()
    # Fresh users at each level: a user runs one test at a time, and the last level's tests
    # may still be closing.
    calls = sum((n + 1) // 2 for n in levels) + (VIDEO_ONLY_TESTS + 1) // 2
    with (
        live_app(workdir, no_turn, calls=calls) as app,
        run_redis(workdir) as redis,
    ):
        tokens = [t for call in app.calls for t in (call.client_token, call.therapist_token)]
        env = {
            "VIDEO_TURN_URLS": "",
            "REDIS_URL": redis,
            "VIDEO_PRECALL_MEDIA_WORKER": "channels",
            "VIDEO_PRECALL_MAX_TESTS": "1000",
            "VIDEO_PRECALL_QUEUE_SECONDS": "10",
        }
        web = app.start_server(**env)
        worker = app.start_media_worker(**env, MEDIA_WORKER_CPUS=str(worker_cpu))
        pid = worker.process.pid
        idle_began, idle_cpu = time.perf_counter(), cpu_seconds(pid)
        await asyncio.sleep(3)  # the baseline: the worker with nothing to do
        baseline = (cpu_seconds(pid) - idle_cpu) / (time.perf_counter() - idle_began)
        results = []
        for n in levels:
            users, tokens = tokens[:n], tokens[2 * ((n + 1) // 2) :]
            result = await level(n, web.base_url, users, pid, args.seconds, encoded)
            results.append(result)
            if result["delivery"] < DELIVERY_GOAL or result["completed"] < n:
                break
        # The same video without sound, beside the ramp: what the sound costs.
        video_only = await level(
            VIDEO_ONLY_TESTS,
            web.base_url,
            tokens[:VIDEO_ONLY_TESTS],
            pid,
            args.seconds,
            encoded,
            audio=False,
        )
        app.stop_all()
    carried = [
        r["tests"]
        for r in results
        if r["delivery"] >= DELIVERY_GOAL and r["completed"] == r["tests"]
    ]
    best = max(carried, default=0)
    at_best = next((r for r in results if r["tests"] == best), None)
    return {
        "bench": "precall",
        "cap": {"width": WIDTH, "height": HEIGHT, "fps": FPS},
        "seconds_per_test": args.seconds,
        "tests_carried_at_90pct_delivery": best,
        "cpu_per_test_pct_at_that_level": at_best["cpu_per_test_pct"] if at_best else None,
        "goal_met": {"ge_10_tests_on_one_core": best >= GOAL_TESTS},
        "baseline": {"worker_idle_cpu_share_of_core": round(baseline, 3)},
        "video_only": video_only,
        "levels": results,
        "worker_cpus": [worker_cpu],
        "generator_cpus": others,
        "machine_cpus": os.cpu_count(),
        "video_source": "pre-encoded VP8 loop (the generator does not encode)",
        "database": database,
        "elapsed_s": round(time.perf_counter() - began, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", default="1,2,4,6,8,10,12,14,16,20,24")
    parser.add_argument("--seconds", type=int, default=12)
    args = parser.parse_args()
    if not netns.loopback_only():
        return netns.outside([sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]])
    loopback_ice()

    async def bounded(workdir: Path) -> dict[str, Any]:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=64))
        return await run(args, workdir)

    with tempfile.TemporaryDirectory(prefix="bench-precall-") as tmp:
        result = asyncio.run(bounded(Path(tmp)))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
