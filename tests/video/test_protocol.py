"""video/protocol.py: every frame is checked before anything else (VID-07).

Pure functions: the socket-level behaviour (error messages, closes, nothing relayed) is in
test_signalling.py.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from video.protocol import (
    CLIENT_TYPES,
    ProtocolError,
    RateLimiter,
    Verdict,
    frame_size_ok,
    message_parse,
    note_clean,
)

PID = str(uuid.uuid4())
CANDIDATE = {
    "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
    "usernameFragment": "Xk3v",
}
VALID: dict[str, dict[str, Any]] = {
    "hello": {"token": "eyJ.x.y"},
    "admit": {"participant": PID},
    "deny": {"participant": PID},
    "note": {"text": "Running 5 minutes late"},
    "notes": {"allow": False},
    "offer": {"round": 1, "sdp": "v=0\r\n"},
    "answer": {"round": 2, "sdp": "v=0\r\n"},
    "candidate": {"round": 1, "candidate": CANDIDATE},
    "restart": {},
    "media": {"audio": True, "video": False},
    "share": {"round": 1, "state": "started", "mid": "2"},
    "mode": {"mode": "audio"},
    "leave": {},
    "end": {},
    "connection": {"state": "connected"},
    "stats": {
        "rtt_ms": 40.0,
        "loss": 0.0,
        "jitter_ms": 2.5,
        "bitrate_in_kbps": None,
        "bitrate_out_kbps": 500.0,
        "width": 320,
        "height": 240,
        "relay": False,
    },
}


def frame(kind: str, **fields: Any) -> str:
    return json.dumps({"v": 1, "type": kind, **fields})


def code_of(text: str | None, data: bytes | None = None) -> str:
    with pytest.raises(ProtocolError) as caught:
        message_parse(text, data)
    return caught.value.code


def test_every_client_type_has_a_valid_sample() -> None:
    assert set(VALID) == set(CLIENT_TYPES)


@pytest.mark.parametrize("kind", sorted(VALID))
def test_valid_messages_parse(kind: str) -> None:
    message = message_parse(frame(kind, **VALID[kind]))
    assert message.type == kind
    assert message.fields == VALID[kind]


def test_optional_fields() -> None:
    assert message_parse(frame("hello", token="t", resume="r")).fields == {
        "token": "t",
        "resume": "r",
    }
    assert message_parse(frame("hello", token="t", resume=None)).fields["resume"] is None
    end = message_parse(frame("candidate", round=3, candidate=None))
    assert end.fields == {"round": 3, "candidate": None}
    short = message_parse(frame("candidate", round=3, candidate={"candidate": ""}))
    assert short.fields["candidate"] == {"candidate": ""}
    nulls = {"candidate": "c", "sdpMid": None, "sdpMLineIndex": None, "usernameFragment": None}
    assert message_parse(frame("candidate", round=3, candidate=nulls)).fields["candidate"] == nulls


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[1, 2]",
        '"hello"',
        "1",
        "null",
        '{"v": 1, "type": "end", "v": 1}',
        '{"v": 1, "type": "media", "audio": NaN, "video": true}',
        "[" * 5000 + "]" * 5000,
    ],
    ids=["empty", "garbage", "array", "string", "number", "null", "duplicate-key", "nan", "deep"],
)
def test_not_a_json_object(text: str) -> None:
    """VID-07: not JSON, not an object → bad_message."""
    assert code_of(text) == "bad_message"


def test_binary_frame_refused() -> None:
    assert code_of(None, b'{"v": 1, "type": "end"}') == "bad_message"


@pytest.mark.parametrize("version", [2, 0, -1, 10**6])
def test_wrong_version(version: int) -> None:
    """VID-07: a wrong protocol version → unsupported_version, with the type as ref."""
    with pytest.raises(ProtocolError) as caught:
        message_parse(json.dumps({"v": version, "type": "end"}))
    assert (caught.value.code, caught.value.ref) == ("unsupported_version", "end")


@pytest.mark.parametrize("version", [None, "1", 1.0, True], ids=["null", "str", "float", "bool"])
def test_version_not_an_integer(version: object) -> None:
    raw = {"type": "end"} if version is None else {"v": version, "type": "end"}
    assert code_of(json.dumps(raw)) == "bad_message"


@pytest.mark.parametrize("kind", ["subscribe", "HELLO", "peer-joined", "error", ""])
def test_unknown_type(kind: str) -> None:
    """VID-07: an unknown type (server-only types included) → unknown_type."""
    assert code_of(frame(kind)) == "unknown_type"


def test_type_not_a_string() -> None:
    assert code_of(json.dumps({"v": 1, "type": 3})) == "bad_message"
    assert code_of(json.dumps({"v": 1})) == "bad_message"


@pytest.mark.parametrize("kind", sorted(VALID))
def test_extra_field_refused(kind: str) -> None:
    """VID-07: extra fields → bad_message."""
    with pytest.raises(ProtocolError) as caught:
        message_parse(frame(kind, **VALID[kind], extra=1))
    assert (caught.value.code, caught.value.ref) == ("bad_message", kind)


@pytest.mark.parametrize("kind", sorted(k for k, v in VALID.items() if v))
def test_missing_field_refused(kind: str) -> None:
    """VID-07: a missing field → bad_message."""
    fields = dict(VALID[kind])
    fields.pop(next(iter(fields)))
    assert code_of(frame(kind, **fields)) == "bad_message"


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("hello", {"token": 5}),
        ("hello", {"token": "x" * 4097}),
        ("hello", {"token": "t", "resume": "r" * 129}),
        ("admit", {"participant": "not-a-uuid"}),
        ("admit", {"participant": 5}),
        ("deny", {"participant": PID.replace("-", "") + "abcd"}),
        ("note", {"text": ""}),
        ("note", {"text": "\x00\x01 \u202e"}),
        ("note", {"text": 42}),
        ("notes", {"allow": 1}),
        ("notes", {"allow": "true"}),
        ("offer", {"round": 0, "sdp": "v=0"}),
        ("offer", {"round": -1, "sdp": "v=0"}),
        ("offer", {"round": True, "sdp": "v=0"}),
        ("offer", {"round": 1.5, "sdp": "v=0"}),
        ("offer", {"round": "1", "sdp": "v=0"}),
        ("offer", {"round": 1, "sdp": ""}),
        ("answer", {"round": 1, "sdp": {"sdp": "v=0"}}),
        ("candidate", {"round": 1, "candidate": "candidate:1 1 udp"}),
        ("candidate", {"round": 1, "candidate": {}}),
        ("candidate", {"round": 1, "candidate": {**CANDIDATE, "extra": 1}}),
        ("candidate", {"round": 1, "candidate": {**CANDIDATE, "candidate": "c" * 1025}}),
        ("candidate", {"round": 1, "candidate": {**CANDIDATE, "sdpMid": "m" * 33}}),
        ("candidate", {"round": 1, "candidate": {**CANDIDATE, "sdpMid": 0}}),
        ("candidate", {"round": 1, "candidate": {**CANDIDATE, "sdpMLineIndex": 65}}),
        ("candidate", {"round": 1, "candidate": {**CANDIDATE, "sdpMLineIndex": -1}}),
        ("candidate", {"round": 1, "candidate": {**CANDIDATE, "sdpMLineIndex": "0"}}),
        ("candidate", {"round": 1, "candidate": {**CANDIDATE, "usernameFragment": "u" * 257}}),
        ("media", {"audio": None, "video": True}),
        ("mode", {"mode": "screen"}),
        ("share", {"round": 1, "state": "paused", "mid": "2"}),
        ("share", {"round": 1, "state": "started", "mid": ""}),
        ("share", {"round": 1, "state": "started", "mid": "m" * 33}),
        ("share", {"round": 1, "state": "started", "mid": 2}),
        ("share", {"round": 0, "state": "stopped", "mid": "2"}),
        ("connection", {"state": "failed"}),
        ("connection", {"state": True}),
    ],
)
def test_field_types_and_bounds(kind: str, fields: dict[str, Any]) -> None:
    """VID-07: a field of the wrong type or out of bounds → bad_message."""
    assert code_of(frame(kind, **fields)) == "bad_message"


def test_note_length_counts_after_cleaning(settings: Any) -> None:
    settings.VIDEO_WAITING_NOTE_MAX_CHARS = 5
    assert message_parse(frame("note", text="\x07ab\u202ecde\x00 ")).fields["text"] == "abcde"
    assert code_of(frame("note", text="abcdef")) == "bad_message"


def test_note_clean_keeps_line_breaks() -> None:
    assert note_clean("  line one\nline\ttwo\r\x1b[31m ") == "line one\nline\ttwo[31m"


def test_error_detail_never_quotes_the_message() -> None:
    secret = "candidate:1 1 udp 2130706431 203.0.113.7 50000 typ host"
    with pytest.raises(ProtocolError) as caught:
        message_parse(frame("candidate", round=1, candidate={"candidate": secret, "x": 1}))
    assert "203.0.113.7" not in caught.value.detail


def test_a_connection_report_carries_no_client_time() -> None:
    """Attendance: the server's time of receipt counts, so a client's clock has no field to
    travel in; a report with one is refused (bad_message), never read."""
    sent = frame("connection", state="connected", at="2020-01-01T00:00:00Z")
    assert code_of(sent) == "bad_message"


def test_frame_size(settings: Any) -> None:
    """VID-07: an oversized frame is found by its UTF-8 bytes (the socket closes 4413)."""
    settings.VIDEO_SIGNAL_MAX_FRAME_BYTES = 100
    assert frame_size_ok("a" * 100, None)
    assert not frame_size_ok("a" * 101, None)
    assert frame_size_ok("é" * 50, None)
    assert not frame_size_ok("é" * 51, None)
    assert not frame_size_ok(None, b"x" * 101)
    assert frame_size_ok(None, b"x" * 100)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_burst_then_sustained_rate() -> None:
    """VID-07: BURST messages at once, then RATE a second; a flood is refused, then closed."""
    clock = FakeClock()
    limiter = RateLimiter(rate=2, burst=4, clock=clock)
    assert [limiter.check() for _ in range(4)] == [Verdict.OK] * 4
    assert limiter.check() is Verdict.LIMITED
    clock.now += 0.5  # one token back
    assert limiter.check() is Verdict.OK
    assert limiter.check() is Verdict.LIMITED
    clock.now += 10  # refilled to the burst, not beyond
    assert [limiter.check() for _ in range(5)] == [Verdict.OK] * 4 + [Verdict.LIMITED]


def test_rate_limiter_flooding_after_three_strikes_in_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1, burst=1, strikes=3, strike_window=5, clock=clock)
    assert limiter.check() is Verdict.OK
    assert limiter.check() is Verdict.LIMITED
    assert limiter.check() is Verdict.LIMITED
    assert limiter.check() is Verdict.FLOODING


def test_rate_limiter_strikes_expire() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=0.1, burst=1, strikes=3, strike_window=5, clock=clock)
    assert limiter.check() is Verdict.OK
    assert limiter.check() is Verdict.LIMITED
    assert limiter.check() is Verdict.LIMITED
    clock.now += 6  # both strikes are older than the window (and less than a token back)
    assert limiter.check() is Verdict.LIMITED
    assert limiter.check() is Verdict.LIMITED
    assert limiter.check() is Verdict.FLOODING


def test_rate_limiter_defaults_from_settings(settings: Any) -> None:
    settings.VIDEO_SIGNAL_RATE_PER_SECOND = 3
    settings.VIDEO_SIGNAL_BURST = 2
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    assert (limiter.rate, limiter.burst) == (3.0, 2.0)
