"""The SDP check (VID-05): what the server relays must set up an encrypted call.

Every SDP an ``offer`` or ``answer`` carries is parsed with aiortc's parser before it is relayed
and refused unless:

- its UTF-8 encoding is at most ``VIDEO_SDP_MAX_BYTES`` (``sdp_too_large``);
- it parses and has at least one media section (``bad_sdp``);
- every media section uses ``UDP/TLS/RTP/SAVPF`` (audio, video) or ``UDP/DTLS/SCTP`` /
  ``DTLS/SCTP`` (application): no plain ``RTP/AVP``, no SDES ``RTP/SAVP`` (``insecure_sdp``);
- every media section has a DTLS fingerprint, its own or the session's, and every fingerprint it
  has is SHA-256, SHA-384 or SHA-512 (``insecure_sdp``: none, SHA-1 or MD5);
- no ``a=crypto`` line anywhere (SDES keys in the clear; ``insecure_sdp``). Read from the raw
  lines: the parser ignores attributes it does not know.

A valid SDP is relayed as received (the original string, byte for byte). Pure: no I/O, no
logging; an error's ``detail`` never quotes the SDP.
"""

from __future__ import annotations

import re

from aiortc.sdp import SessionDescription, grouplines
from django.conf import settings

__all__ = ["SdpError", "sdp_check"]

SECURE_PROFILES = {
    "audio": frozenset({"UDP/TLS/RTP/SAVPF"}),
    "video": frozenset({"UDP/TLS/RTP/SAVPF"}),
    "application": frozenset({"UDP/DTLS/SCTP", "DTLS/SCTP"}),
}
STRONG_FINGERPRINTS = frozenset({"sha-256", "sha-384", "sha-512"})
_FINGERPRINT = re.compile(r"^a=fingerprint:(\S+)\s+\S+\s*$", re.IGNORECASE)
_MALFORMED_FINGERPRINT = re.compile(r"^a=fingerprint:", re.IGNORECASE)
_CRYPTO = re.compile(r"^a=crypto:", re.IGNORECASE)


class SdpError(Exception):
    """An SDP that must not be relayed; ``code`` is the protocol's error code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def _fingerprint_algorithms(lines: list[str]) -> list[str]:
    algorithms = []
    for line in lines:
        line = line.strip()
        if not _MALFORMED_FINGERPRINT.match(line):
            continue
        match = _FINGERPRINT.match(line)
        if match is None:
            raise SdpError("bad_sdp", "A fingerprint line is malformed.")
        algorithms.append(match.group(1).lower())
    return algorithms


def sdp_check(text: str) -> None:
    """Return if ``text`` may be relayed; raise ``SdpError`` (with its code) otherwise."""
    if len(text.encode("utf-8", "surrogatepass")) > settings.VIDEO_SDP_MAX_BYTES:
        raise SdpError("sdp_too_large", "The SDP is over the size limit.")
    try:
        parsed = SessionDescription.parse(text)
        session_lines, media_groups = grouplines(text)
    except Exception as exc:  # the parser asserts and indexes: any failure is a bad SDP
        raise SdpError("bad_sdp", "The SDP does not parse.") from exc
    if not parsed.media or len(parsed.media) != len(media_groups):
        raise SdpError("bad_sdp", "The SDP has no media section.")
    if not any(line.startswith("v=") for line in session_lines):
        raise SdpError("bad_sdp", "The SDP has no version line.")
    for line in [*session_lines, *(line for group in media_groups for line in group)]:
        if _CRYPTO.match(line.strip()):
            raise SdpError("insecure_sdp", "SDES keys (a=crypto) are not accepted.")
    session_algorithms = _fingerprint_algorithms(session_lines)
    for index, (media, lines) in enumerate(zip(parsed.media, media_groups, strict=True)):
        allowed = SECURE_PROFILES.get(media.kind)
        if allowed is None:
            raise SdpError("bad_sdp", f"Media section {index} has an unknown kind.")
        if media.profile not in allowed:
            raise SdpError(
                "insecure_sdp", f"Media section {index} does not use a DTLS-SRTP profile."
            )
        algorithms = _fingerprint_algorithms(lines[1:]) or session_algorithms
        if not algorithms:
            raise SdpError("insecure_sdp", f"Media section {index} has no DTLS fingerprint.")
        if any(algorithm not in STRONG_FINGERPRINTS for algorithm in algorithms):
            raise SdpError(
                "insecure_sdp", f"Media section {index} has a fingerprint weaker than SHA-256."
            )
