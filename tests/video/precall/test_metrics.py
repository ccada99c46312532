"""video/precall/metrics.py: the verdict (good, fair, poor) and its advice, from the figures."""

from __future__ import annotations

import pytest

from video.precall.metrics import ADVICE, Direction, Metrics, precall_verdict

CLEAN = Metrics(
    connected=True,
    seconds=10.0,
    rtt_ms=40.0,
    rtt_samples=20,
    rtcp_rtt_ms=45.0,
    upstream=Direction(loss_pct=0.0, jitter_ms=4.0, kbps=400.0),
    downstream=Direction(loss_pct=0.0, jitter_ms=5.0, kbps=420.0),
    video_received=True,
    audio_received=True,
    video_fps=15.0,
    video_width=320,
    video_height=240,
    path="direct",
)


def verdict(metrics: Metrics = CLEAN, *, video: bool = True, audio: bool = True):
    return precall_verdict(metrics, expect_video=video, expect_audio=audio, fps_cap=15)


def with_(**changes) -> Metrics:
    from dataclasses import replace

    return replace(CLEAN, **changes)


def test_a_clean_connection_is_good_without_advice() -> None:
    assert verdict().as_dict() == {"verdict": "good", "advice": []}


@pytest.mark.parametrize(
    ("metrics", "level", "code"),
    [
        (with_(rtt_ms=199.9), "good", None),
        (with_(rtt_ms=200.0), "fair", "high_latency"),
        (with_(rtt_ms=400.0), "poor", "high_latency"),
        (with_(upstream=Direction(loss_pct=2.0, jitter_ms=4.0, kbps=400.0)), "fair", "packet_loss"),
        (
            with_(downstream=Direction(loss_pct=7.5, jitter_ms=4.0, kbps=400.0)),
            "poor",
            "packet_loss",
        ),
        (with_(upstream=Direction(loss_pct=0.0, jitter_ms=30.0, kbps=400.0)), "fair", "jitter"),
        (with_(downstream=Direction(loss_pct=0.0, jitter_ms=61.0, kbps=9.0)), "poor", "jitter"),
        (
            with_(upstream=Direction(loss_pct=0.0, jitter_ms=4.0, kbps=99.0)),
            "fair",
            "low_bandwidth",
        ),
        (
            with_(upstream=Direction(loss_pct=0.0, jitter_ms=4.0, kbps=49.0)),
            "poor",
            "low_bandwidth",
        ),
        (with_(video_fps=8.9), "fair", "low_frame_rate"),
        (with_(video_fps=4.4), "poor", "low_frame_rate"),
        (with_(video_received=False), "poor", "no_video"),
        (with_(audio_received=False), "poor", "no_audio"),
    ],
)
def test_each_figure_past_its_threshold_gives_its_level_and_advice(
    metrics: Metrics, level: str, code: str | None
) -> None:
    result = verdict(metrics)
    assert result.level == level
    assert [a.code for a in result.advice] == ([code] if code else [])


def test_the_data_channel_round_trip_wins_over_rtcp_and_rtcp_stands_in_without_pings() -> None:
    assert verdict(with_(rtt_ms=50.0, rtcp_rtt_ms=900.0)).level == "good"
    assert verdict(with_(rtt_ms=None, rtt_samples=0, rtcp_rtt_ms=450.0)).level == "poor"


def test_the_worst_finding_sets_the_verdict_and_comes_first() -> None:
    result = verdict(
        with_(rtt_ms=250.0, upstream=Direction(loss_pct=9.0, jitter_ms=4.0, kbps=400.0))
    )
    assert result.level == "poor"
    assert [(a.code, a.level) for a in result.advice] == [
        ("packet_loss", "poor"),
        ("high_latency", "fair"),
    ]


def test_a_device_without_camera_is_judged_on_sound_and_connection() -> None:
    audio_only = with_(
        video_received=False,
        video_fps=None,
        upstream=Direction(loss_pct=0.0, jitter_ms=4.0, kbps=30.0),
    )
    assert verdict(audio_only, video=False).level == "good"
    thin = with_(video_received=False, upstream=Direction(loss_pct=0.0, jitter_ms=4.0, kbps=7.0))
    assert [a.code for a in verdict(thin, video=False).advice] == ["low_bandwidth"]


def test_no_connection_is_poor_with_one_piece_of_advice() -> None:
    result = verdict(Metrics(connected=False, seconds=0.0))
    assert (result.level, [a.code for a in result.advice]) == ("poor", ["no_connection"])


def test_a_relayed_path_is_mentioned_without_lowering_the_verdict() -> None:
    result = verdict(with_(path="relay"))
    assert result.as_dict() == {
        "verdict": "good",
        "advice": [{"code": "relayed", "level": "good", "text": ADVICE["relayed"]}],
    }


def test_figures_are_rounded_for_the_report() -> None:
    data = with_(rtt_ms=41.2345, upstream=Direction(loss_pct=0.333, jitter_ms=None)).as_dict()
    assert data["rtt_ms"] == 41.2
    assert data["upstream"] == {"loss_pct": 0.3, "jitter_ms": None, "kbps": None}
