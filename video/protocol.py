"""The signalling protocol's frames, checked before anything else (docs/video.md, VID-07).

Pure functions, no I/O: ``frame_size_ok`` (over ``VIDEO_SIGNAL_MAX_FRAME_BYTES`` the socket is
closed 4413), ``message_parse`` (a JSON object with ``"v": 1``, a known ``type`` and exactly that
type's fields, each of the right type and within its bounds; else ``ProtocolError`` with the
code for the ``error`` message) and ``RateLimiter`` (a token bucket per connection: a message
over the bucket is refused ``rate_limited``; a connection refused again and again is closed
4429). ``server_message`` builds what the server sends.
"""

from __future__ import annotations

import enum
import json
import time
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

__all__ = [
    "CLIENT_TYPES",
    "CLOSE_CODES",
    "ERROR_CODES",
    "SERVER_TYPES",
    "SUBPROTOCOL",
    "Close",
    "Message",
    "ProtocolError",
    "RateLimiter",
    "Verdict",
    "frame_size_ok",
    "message_parse",
    "note_clean",
    "server_message",
]

VERSION = 1
SUBPROTOCOL = "telehealth.video.v1"
TOKEN_SUBPROTOCOL_PREFIX = "token."  # noqa: S105 - a prefix, not a secret


class Close(enum.IntEnum):
    """WebSocket close codes (docs/video.md, "Close codes")."""

    BAD_HELLO = 4400
    UNAUTHENTICATED = 4401
    FORBIDDEN = 4403
    REPLACED = 4409
    ENDED = 4410
    TOO_LARGE = 4413
    FLOODING = 4429


CLOSE_CODES = {code.value: code.name.lower() for code in Close}

# Every ``error`` code the server sends.
ERROR_CODES = (
    "bad_message",
    "unsupported_version",
    "unknown_type",
    "not_admitted",
    "not_your_turn",
    "stale_round",
    "forbidden",
    "not_waiting",
    "notes_off",
    "therapist_absent",
    "no_peer",
    "rate_limited",
    "bad_sdp",
    "insecure_sdp",
    "sdp_too_large",
    "internal_error",
)

# What the server sends (``server_message``).
SERVER_TYPES = (
    "joined",
    "waiting",
    "waiting-list",
    "note",
    "admitted",
    "denied",
    "peer-joined",
    "offer",
    "answer",
    "candidate",
    "peer-media",
    "share",
    "mode",
    "peer-left",
    "ended",
    "error",
)

_TOKEN_MAX = 4096
_RESUME_MAX = 128
_SDP_TYPE_MAX = 1024 * 1024  # the real bound is VIDEO_SDP_MAX_BYTES, checked by video.sdp
_CANDIDATE_MAX = 1024
_MID_MAX = 32
_MLINE_MAX = 64
_UFRAG_MAX = 256
_ROUND_MAX = 2**31 - 1
_MS_MAX = 60_000.0
_KBPS_MAX = 1_000_000.0
_PIXELS_MAX = 16_384
# Bidirectional overrides and isolates: they reorder what the therapist reads.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


class ProtocolError(Exception):
    """A refused message: ``code`` and ``detail`` go in the ``error`` message, ``ref`` is the
    offending type when known. ``detail`` never quotes the message."""

    def __init__(self, code: str, detail: str, ref: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.ref = ref


@dataclass(frozen=True)
class Message:
    """A valid client message: its type and its fields (without ``v`` and ``type``)."""

    type: str
    fields: dict[str, Any]


# --- field checkers: each returns the value as it will be used, or raises ValueError -------


def _str(max_len: int, *, min_len: int = 1) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not min_len <= len(value) <= max_len:
            raise ValueError
        return value

    return check


def _optional_str(max_len: int) -> Callable[[Any], str | None]:
    inner = _str(max_len, min_len=0)

    def check(value: Any) -> str | None:
        return None if value is None else inner(value)

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError
    return value


def _int(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError
        return value

    return check


def _measure(high: float) -> Callable[[Any], float | None]:
    """A measurement: a finite number from 0 to ``high``, or null (not measured)."""

    def check(value: Any) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= high:
            raise ValueError
        return float(value)

    return check


def _pixels(value: Any) -> int | None:
    return None if value is None else _int(0, _PIXELS_MAX)(value)


def _uuid(value: Any) -> str:
    if not isinstance(value, str) or len(value) != 36:
        raise ValueError
    return str(uuid.UUID(value))


def _choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError
        return str(value)

    return check


def note_clean(text: str) -> str:
    """A note as the therapist sees it: control characters (but line breaks and tabs) and
    bidirectional overrides removed, surrounding blanks stripped."""
    kept = (
        c
        for c in text
        if c in "\n\t" or (unicodedata.category(c) not in ("Cc", "Cs") and c not in _BIDI)
    )
    return "".join(kept).strip()


def _note_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError
    cleaned = note_clean(value)
    if not cleaned or len(cleaned) > settings.VIDEO_WAITING_NOTE_MAX_CHARS:
        raise ValueError
    return cleaned


_CANDIDATE_FIELDS: dict[str, Callable[[Any], Any]] = {
    "candidate": _str(_CANDIDATE_MAX, min_len=0),
    "sdpMid": _optional_str(_MID_MAX),
    "sdpMLineIndex": lambda v: None if v is None else _int(0, _MLINE_MAX)(v),
    "usernameFragment": _optional_str(_UFRAG_MAX),
}


def _candidate(value: Any) -> dict[str, Any] | None:
    """``RTCIceCandidateInit`` (``candidate`` required, the others optional, nothing else), or
    null for the end of candidates."""
    if value is None:
        return None
    if not isinstance(value, dict) or "candidate" not in value:
        raise ValueError
    if set(value) - set(_CANDIDATE_FIELDS):
        raise ValueError
    return {key: _CANDIDATE_FIELDS[key](item) for key, item in value.items()}


_round = _int(1, _ROUND_MAX)

# type → {field: (checker, required)}
_FIELDS: dict[str, dict[str, tuple[Callable[[Any], Any], bool]]] = {
    "hello": {
        "token": (_str(_TOKEN_MAX, min_len=0), True),
        "resume": (_optional_str(_RESUME_MAX), False),
        # the client restarts ICE on its peer connection in a restart round (browsers)
        "ice_restart": (_bool, False),
    },
    "admit": {"participant": (_uuid, True)},
    "deny": {"participant": (_uuid, True)},
    "note": {"text": (_note_text, True)},
    "notes": {"allow": (_bool, True)},
    "offer": {"round": (_round, True), "sdp": (_str(_SDP_TYPE_MAX), True)},
    "answer": {"round": (_round, True), "sdp": (_str(_SDP_TYPE_MAX), True)},
    "candidate": {"round": (_round, True), "candidate": (_candidate, True)},
    "restart": {"round": (_round, False)},
    "media": {"audio": (_bool, True), "video": (_bool, True)},
    # screen sharing: the shared video's m-line (its ``mid``) in the round's SDP
    "share": {
        "round": (_round, True),
        "state": (_choice("started", "stopped"), True),
        "mid": (_str(_MID_MAX), True),
    },
    "mode": {"mode": (_choice("video", "audio"), True)},
    "leave": {},
    "end": {},
    "stats": {
        "rtt_ms": (_measure(_MS_MAX), True),
        "loss": (_measure(1.0), True),
        "jitter_ms": (_measure(_MS_MAX), True),
        "bitrate_in_kbps": (_measure(_KBPS_MAX), True),
        "bitrate_out_kbps": (_measure(_KBPS_MAX), True),
        "width": (_pixels, True),
        "height": (_pixels, True),
        "relay": (_bool, True),
    },
    # attendance: the peer connection's state (no time: the server's receipt time counts)
    "connection": {"state": (_choice("connected", "disconnected"), True)},
}
CLIENT_TYPES = tuple(_FIELDS)


def frame_size_ok(text: str | None, data: bytes | None) -> bool:
    """Whether a frame is within ``VIDEO_SIGNAL_MAX_FRAME_BYTES`` (its UTF-8 bytes)."""
    limit = settings.VIDEO_SIGNAL_MAX_FRAME_BYTES
    if data is not None and len(data) > limit:
        return False
    if text is None or len(text) * 4 <= limit:  # the usual case: no need to encode
        return True
    return len(text) <= limit and len(text.encode("utf-8", "surrogatepass")) <= limit


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def message_parse(text: str | None, data: bytes | None = None) -> Message:
    """A valid client message from a frame (size already checked), or ``ProtocolError``."""
    if text is None:
        raise ProtocolError("bad_message", "Messages are JSON text frames.")
    try:
        raw = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        raise ProtocolError("bad_message", "The frame is not valid JSON.") from None
    if not isinstance(raw, dict):
        raise ProtocolError("bad_message", "A message is a JSON object.")
    kind = raw.get("type")
    ref = kind if isinstance(kind, str) and kind in _FIELDS else None
    version = raw.get("v")
    if "v" not in raw or isinstance(version, bool) or not isinstance(version, int):
        raise ProtocolError("bad_message", "A message needs an integer v.", ref)
    if version != VERSION:
        raise ProtocolError("unsupported_version", "This server speaks version 1.", ref)
    if not isinstance(kind, str):
        raise ProtocolError("bad_message", "A message needs a string type.")
    spec = _FIELDS.get(kind)
    if spec is None:
        raise ProtocolError("unknown_type", "Unknown message type.")
    given = set(raw) - {"v", "type"}
    missing = [name for name, (_, required) in spec.items() if required and name not in given]
    extra = sorted(given - set(spec))
    if missing or extra:
        names = ", ".join([*(f"missing {m}" for m in missing), *(f"unexpected {e}" for e in extra)])
        raise ProtocolError("bad_message", f"Wrong fields: {names}."[:200], kind)
    fields: dict[str, Any] = {}
    for name in spec:
        if name not in raw:
            continue
        checker, _ = spec[name]
        try:
            fields[name] = checker(raw[name])
        except (ValueError, TypeError):
            raise ProtocolError("bad_message", f"Field {name} is not valid.", kind) from None
    return Message(type=kind, fields=fields)


def server_message(kind: str, **fields: Any) -> dict[str, Any]:
    """What the server sends: ``{"v": 1, "type": kind, **fields}``."""
    assert kind in SERVER_TYPES, kind
    return {"v": VERSION, "type": kind, **fields}


def error_message(error: ProtocolError) -> dict[str, Any]:
    return server_message("error", code=error.code, detail=error.detail, ref=error.ref)


class Verdict(enum.Enum):
    OK = "ok"
    LIMITED = "limited"  # refuse this message (``rate_limited``)
    FLOODING = "flooding"  # close the socket (4429)


class RateLimiter:
    """A token bucket per connection: ``burst`` messages at once, ``rate`` a second sustained.

    A refused message is a strike; ``strikes`` strikes within ``strike_window`` seconds mean
    the connection keeps flooding (close it). ``clock`` is monotonic seconds (injectable)."""

    def __init__(
        self,
        *,
        rate: float | None = None,
        burst: int | None = None,
        strikes: int = 3,
        strike_window: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = float(rate if rate is not None else settings.VIDEO_SIGNAL_RATE_PER_SECOND)
        self.burst = float(burst if burst is not None else settings.VIDEO_SIGNAL_BURST)
        self.strikes = strikes
        self.strike_window = strike_window
        self.clock = clock
        self._tokens = self.burst
        self._last = clock()
        self._strike_times: list[float] = []

    def check(self) -> Verdict:
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + max(0.0, now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return Verdict.OK
        self._strike_times = [t for t in self._strike_times if now - t < self.strike_window]
        self._strike_times.append(now)
        if len(self._strike_times) >= self.strikes:
            return Verdict.FLOODING
        return Verdict.LIMITED
