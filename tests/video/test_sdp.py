"""video/sdp.py: which SDPs the server relays (VID-05).

Real SDPs: one made by aiortc (two RTCPeerConnections, offer and answer) and a typical Chrome
offer (tests/video/fixtures/chrome_offer.sdp: audio, video and a data channel, sha-256). Each
refusal derives from one of them by changing one thing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aioice.ice
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

from video.sdp import SdpError, sdp_check

FIXTURES = Path(__file__).parent / "fixtures"
CHROME = (FIXTURES / "chrome_offer.sdp").read_bytes().decode()  # keeps its CRLFs


@pytest.fixture(scope="module")
def aiortc_pair() -> tuple[str, str]:
    """An offer and its answer from two aiortc peers, candidates on loopback only."""
    patch = pytest.MonkeyPatch()
    patch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])

    async def negotiate() -> tuple[str, str]:
        config = RTCConfiguration(iceServers=[])
        offerer, answerer = RTCPeerConnection(config), RTCPeerConnection(config)
        try:
            offerer.addTrack(AudioStreamTrack())
            offerer.addTrack(VideoStreamTrack())
            offerer.createDataChannel("chat")
            await offerer.setLocalDescription(await offerer.createOffer())
            await answerer.setRemoteDescription(offerer.localDescription)
            await answerer.setLocalDescription(await answerer.createAnswer())
            return offerer.localDescription.sdp, answerer.localDescription.sdp
        finally:
            await offerer.close()
            await answerer.close()

    try:
        return asyncio.run(negotiate())
    finally:
        patch.undo()


def refused(text: str) -> str:
    with pytest.raises(SdpError) as caught:
        sdp_check(text)
    return caught.value.code


def test_aiortc_offer_and_answer_pass(aiortc_pair: tuple[str, str]) -> None:
    offer, answer = aiortc_pair
    assert "m=application" in offer and "127.0.0.1" in offer
    sdp_check(offer)
    sdp_check(answer)


def test_chrome_offer_passes() -> None:
    sdp_check(CHROME)


def test_session_level_fingerprint_suffices() -> None:
    """A fingerprint given once for the session covers every media section."""
    line = next(x for x in CHROME.splitlines() if x.startswith("a=fingerprint:"))
    media_less = CHROME.replace(line + "\r\n", "")
    text = media_less.replace("t=0 0\r\n", "t=0 0\r\n" + line + "\r\n")
    assert text.count("a=fingerprint:") == 1
    sdp_check(text)


@pytest.mark.parametrize("algorithm", ["sha-384", "sha-512", "SHA-256"])
def test_stronger_fingerprints_pass(algorithm: str) -> None:
    sdp_check(CHROME.replace("a=fingerprint:sha-256", f"a=fingerprint:{algorithm}"))


def test_no_fingerprint_refused(aiortc_pair: tuple[str, str]) -> None:
    """VID-05: no a=fingerprint → insecure_sdp (Chrome and aiortc alike)."""
    for text in (CHROME, aiortc_pair[0]):
        lines = [x for x in text.split("\r\n") if not x.startswith("a=fingerprint:")]
        assert refused("\r\n".join(lines)) == "insecure_sdp"


def test_one_media_section_without_fingerprint_refused() -> None:
    """VID-05: every media section needs one; the data channel's alone missing is enough."""
    head, data = CHROME.split("m=application")
    data = "\r\n".join(x for x in data.split("\r\n") if not x.startswith("a=fingerprint:"))
    assert refused(head + "m=application" + data) == "insecure_sdp"


@pytest.mark.parametrize("algorithm", ["sha-1", "md5", "sha-224"])
def test_weak_fingerprint_refused(algorithm: str) -> None:
    """VID-05: a fingerprint hash weaker than SHA-256 (sha-1, md5) → insecure_sdp."""
    assert refused(CHROME.replace("a=fingerprint:sha-256", f"a=fingerprint:{algorithm}")) == (
        "insecure_sdp"
    )


def test_weak_fingerprint_next_to_strong_one_refused(aiortc_pair: tuple[str, str]) -> None:
    """VID-05: aiortc offers sha-256/384/512 side by side; adding a sha-1 one is refused."""
    offer = aiortc_pair[0]
    assert offer.count("a=fingerprint:") >= 2
    weak = offer.replace("a=fingerprint:sha-384", "a=fingerprint:sha-1", 1)
    assert refused(weak) == "insecure_sdp"


@pytest.mark.parametrize("profile", ["RTP/AVP", "RTP/SAVP", "RTP/AVPF", "UDP/TLS/RTP/SAVP"])
def test_plain_or_sdes_profile_refused(profile: str) -> None:
    """VID-05: a plain RTP/AVP or an SDES RTP/SAVP profile → insecure_sdp."""
    text = CHROME.replace("m=video 9 UDP/TLS/RTP/SAVPF", f"m=video 9 {profile}")
    assert refused(text) == "insecure_sdp"


def test_data_channel_profile_checked() -> None:
    """VID-05: a data channel over plain SCTP is refused; DTLS/SCTP (the old name) passes."""
    sdp_check(CHROME.replace("UDP/DTLS/SCTP webrtc-datachannel", "DTLS/SCTP 5000"))
    assert refused(CHROME.replace("UDP/DTLS/SCTP", "UDP/SCTP")) == "insecure_sdp"


def test_crypto_line_refused() -> None:
    """VID-05: a=crypto (SDES keys in the SDP) → insecure_sdp, even next to a fingerprint."""
    crypto = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"
    text = CHROME.replace("a=mid:0\r\n", f"a=mid:0\r\n{crypto}\r\n")
    assert refused(text) == "insecure_sdp"
    at_session = CHROME.replace("t=0 0\r\n", f"t=0 0\r\n{crypto}\r\n")
    assert refused(at_session) == "insecure_sdp"


def test_oversized_sdp_refused(settings: object) -> None:
    """VID-05: an SDP over VIDEO_SDP_MAX_BYTES (counted in UTF-8 bytes) → sdp_too_large."""
    limit = len(CHROME.encode())
    settings.VIDEO_SDP_MAX_BYTES = limit  # type: ignore[attr-defined]
    sdp_check(CHROME)
    assert refused(CHROME + "a=x") == "sdp_too_large"
    # as many characters, one more byte
    assert refused(CHROME.replace("s=-", "s=é")) == "sdp_too_large"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",  # no media
        CHROME.replace("m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=audio nine UDP/TLS/RTP/SAVPF 111"),
        CHROME.replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:111"),
        CHROME.replace("m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=audio 9 UDP/TLS/RTP/SAVPF 999"),
        CHROME.replace("a=setup:actpass", "a=setup:sideways"),
        CHROME.replace("c=IN IP4 0.0.0.0", "c=IN IPX nowhere", 1),
        CHROME.replace("sha-256 5A:3C", "sha-256", 1).replace(
            ":D1:06\r\na=setup:actpass\r\na=mid:0", "\r\na=setup:actpass\r\na=mid:0"
        ),
        CHROME.replace("m=video", "m=text", 1),
    ],
    ids=[
        "empty",
        "not-sdp",
        "no-media",
        "bad-port",
        "bad-rtpmap",
        "bad-payload-type",
        "bad-setup",
        "bad-connection",
        "fingerprint-without-value",
        "unknown-kind",
    ],
)
def test_unparsable_sdp_refused(text: str) -> None:
    """VID-05: an SDP that does not parse (or has no media) → bad_sdp."""
    assert refused(text) == "bad_sdp"


def test_detail_never_quotes_the_sdp() -> None:
    with pytest.raises(SdpError) as caught:
        sdp_check(CHROME.replace("a=fingerprint:sha-256", "a=fingerprint:md5"))
    assert "5A:3C" not in caught.value.detail and "md5" not in caught.value.detail
