"""The pre-call test's figures and its verdict (docs/video.md, "Pre-call test"). Pure: no I/O.

``Metrics`` is what the echo peer measured of one test, from its side of the call:

- ``rtt_ms``: the median round trip of the data-channel pings it sent (the user's device answers
  each ``ping`` with a ``pong``); ``rtcp_rtt_ms``: the round trip RTCP receiver reports give
  (absent until the first report that echoes one of ours);
- upstream (the user's device to us): loss and jitter (the audio's when there is audio) of the
  media we received (our inbound RTP statistics), the bitrate of everything received, the video
  frame rate and size that arrived;
- downstream (us to the user's device): loss and jitter the device reported in its RTCP
  receiver reports, the bitrate we sent;
- ``path``: ``direct``, or ``relay`` when the device reached us through TURN (from the selected
  candidate pair: a type, never an address).

``precall_verdict`` turns them into ``good``, ``fair`` or ``poor`` and advice a person can act
on, each with a stable ``code`` (a client may show its own words). The thresholds follow what
video calls tolerate: a round trip under 200 ms (ITU-T G.114 puts 150 ms one way as the limit for
natural conversation), loss under 2 % (Opus and VP8 conceal it), jitter under 30 ms (one
jitter-buffer frame); ``fair`` up to 400 ms, 5 % and 60 ms, ``poor`` beyond. The test does not
measure the link's capacity: the bitrate is what the device's encoder chose to send, flagged
only when too thin for the capped video (``VIDEO_KBPS``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

GOOD, FAIR, POOR = "good", "fair", "poor"
_ORDER = {GOOD: 0, FAIR: 1, POOR: 2}

# (good below, fair below); at or above the second: poor.
RTT_MS = (200.0, 400.0)
LOSS_PCT = (2.0, 5.0)
JITTER_MS = (30.0, 60.0)
# Upstream bitrate (kbit/s): good at or above, fair at or above. An encoder sends what its
# picture needs (a still room needs little), so only a stream too thin for the capped video is
# flagged; congestion shows as loss and delay first.
VIDEO_KBPS = (100.0, 50.0)
AUDIO_KBPS = (16.0, 8.0)
# Fewer frames a second than this share of the cap, arriving here: the camera or the uplink
# cannot keep up.
FPS_SHARE = (0.6, 0.3)

ADVICE = {
    "no_video": "No video reached the test. Check that the browser may use your camera and that "
    "no other app is using it.",
    "no_audio": "No sound reached the test. Check that the browser may use your microphone and "
    "that it is not muted.",
    "no_connection": "Your device could not connect to the test. A firewall or VPN may be "
    "blocking video calls; try another network.",
    "high_latency": "Your connection is slow to answer, so you may talk over each other. Move "
    "closer to your Wi-Fi router, or use a wired connection.",
    "packet_loss": "Parts of the audio and video are lost on the way. Close other apps or "
    "downloads that use the network, or move closer to your Wi-Fi router.",
    "jitter": "Your connection is uneven, so sound may stutter. Pause other devices' streaming "
    "or downloads on your network during the session.",
    "low_bandwidth": "Your upload speed is low for video. Close other apps that use the network; "
    "if it stays low, the session can continue with audio only.",
    "low_frame_rate": "Your video arrives jerky. Close other apps using the camera or the "
    "processor, or turn the camera off during the session.",
    "relayed": "Your network does not allow a direct connection, so the call goes through a "
    "relay. That works, with a little more delay.",
}


@dataclass(frozen=True)
class Direction:
    """One direction's loss (%), jitter (ms) and bitrate (kbit/s); None when not measured."""

    loss_pct: float | None = None
    jitter_ms: float | None = None
    kbps: float | None = None


@dataclass(frozen=True)
class Metrics:
    connected: bool
    seconds: float  # measured for this long, from the media connecting
    rtt_ms: float | None = None  # data-channel pings, median
    rtt_samples: int = 0
    rtcp_rtt_ms: float | None = None
    upstream: Direction = field(default_factory=Direction)
    downstream: Direction = field(default_factory=Direction)
    video_received: bool = False
    audio_received: bool = False
    video_fps: float | None = None
    video_width: int | None = None
    video_height: int | None = None
    path: str | None = None  # "direct" or "relay"

    def as_dict(self) -> dict[str, Any]:
        return _rounded(asdict(self))


def _rounded(data: dict[str, Any]) -> dict[str, Any]:
    def one(value: Any) -> Any:
        if isinstance(value, dict):
            return _rounded(value)
        return round(value, 1) if isinstance(value, float) else value

    return {key: one(value) for key, value in data.items()}


@dataclass(frozen=True)
class Advice:
    code: str
    level: str  # the verdict this finding alone would give

    @property
    def text(self) -> str:
        return ADVICE[self.code]


@dataclass(frozen=True)
class Verdict:
    level: str
    advice: list[Advice]

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.level,
            "advice": [{"code": a.code, "level": a.level, "text": a.text} for a in self.advice],
        }


def _grade(value: float | None, bounds: tuple[float, float]) -> str:
    if value is None or value < bounds[0]:
        return GOOD
    return FAIR if value < bounds[1] else POOR


def _grade_at_least(value: float | None, bounds: tuple[float, float]) -> str:
    if value is None or value >= bounds[0]:
        return GOOD
    return FAIR if value >= bounds[1] else POOR


def _worst(*values: float | None) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def precall_verdict(
    metrics: Metrics, *, expect_video: bool, expect_audio: bool, fps_cap: int
) -> Verdict:
    """``good``, ``fair`` or ``poor`` with the advice that explains it (worst first).

    ``expect_video``/``expect_audio``: whether the user's device offered to send them (a test
    without a camera is judged on its sound and connection only)."""
    if not metrics.connected:
        return Verdict(POOR, [Advice("no_connection", POOR)])
    found: list[Advice] = []
    if expect_video and not metrics.video_received:
        found.append(Advice("no_video", POOR))
    if expect_audio and not metrics.audio_received:
        found.append(Advice("no_audio", POOR))
    rtt = metrics.rtt_ms if metrics.rtt_ms is not None else metrics.rtcp_rtt_ms
    checks = [
        ("high_latency", _grade(rtt, RTT_MS)),
        (
            "packet_loss",
            _grade(_worst(metrics.upstream.loss_pct, metrics.downstream.loss_pct), LOSS_PCT),
        ),
        (
            "jitter",
            _grade(_worst(metrics.upstream.jitter_ms, metrics.downstream.jitter_ms), JITTER_MS),
        ),
    ]
    if expect_video and metrics.video_received:
        checks.append(("low_bandwidth", _grade_at_least(metrics.upstream.kbps, VIDEO_KBPS)))
        share = None if metrics.video_fps is None else metrics.video_fps / max(1, fps_cap)
        checks.append(("low_frame_rate", _grade_at_least(share, FPS_SHARE)))
    elif expect_audio and metrics.audio_received:
        checks.append(("low_bandwidth", _grade_at_least(metrics.upstream.kbps, AUDIO_KBPS)))
    found += [Advice(code, level) for code, level in checks if level != GOOD]
    found.sort(key=lambda a: -_ORDER[a.level])
    level = found[0].level if found else GOOD
    if metrics.path == "relay":
        found.append(Advice("relayed", GOOD))
    return Verdict(level, found)
