"""Calls end to end: two aiortc peers (video.client.VideoClient) join through the real app
under uvicorn, the client waits, the therapist admits, and audio and video flow peer to peer
over DTLS-SRTP on loopback. Also: an outsider is refused at the join (404), a room token does
not open another room's socket (4403), an altered fingerprint makes DTLS fail (VID-06), the
server makes no RTCPeerConnection during a call (VID-09), and two app processes sharing Redis
bring the two sides together."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests.video.webrtc_support import (
    LiveApp,
    Server,
    close_all,
    run_async,
    run_redis,
    start_call,
)
from video.client import JoinRefused, SocketClosed, VideoClient

pytestmark = pytest.mark.webrtc

FRAMES = 30  # about a second of each


async def media_flows_both_ways(*peers: VideoClient) -> None:
    await asyncio.gather(*(p.wait_for_frames(audio=FRAMES, video=FRAMES) for p in peers))
    for peer in peers:
        assert peer.connection_state == "connected"
        assert peer.dtls_state() == "connected"
        pair = peer.selected_pair()
        assert pair is not None
        assert pair.local_address[0] == pair.remote_address[0] == "127.0.0.1", pair


def test_the_client_waits_is_admitted_and_media_flows_peer_to_peer(
    video_app: LiveApp, video_server: Server
) -> None:
    call = video_app.claim()

    async def scenario() -> None:
        therapist, client = VideoClient(name="therapist"), VideoClient(name="client")
        try:
            await start_call(
                call,
                therapist=therapist,
                client=client,
                therapist_api=video_server.base_url,
                client_api=video_server.base_url,
            )
            await media_flows_both_ways(therapist, client)
            # The server offered the therapist the offer, the client the answer.
            offered = [m for m in client.messages if m["type"] == "offer"]
            assert offered and offered[0]["round"] == client.round
            # Leaving for good: the server closes the socket and tells the other side.
            await client.leave()
            assert client.close_code == 1000
            try:
                left = await therapist.wait_for("peer-left", timeout=15)
            except TimeoutError:
                raise AssertionError(video_server.log_tail()) from None
            assert left["participant"] == client.participant_id
            assert left["reason"] == "left"
        finally:
            await close_all(therapist, client)

    run_async(scenario())
    # VID-09: nothing in the server process made a peer connection during the call.
    assert video_server.peer_connections() == ""


def test_a_leave_followed_at_once_by_a_close_still_tells_the_other_side(
    video_app: LiveApp, video_server: Server
) -> None:
    """A client that sends ``leave`` and closes its socket without waiting (a page being closed)
    is gone before the server closes it: the therapist is told all the same."""
    call = video_app.claim()

    async def scenario() -> None:
        therapist, client = VideoClient(name="therapist"), VideoClient(name="client")
        try:
            await start_call(
                call,
                therapist=therapist,
                client=client,
                therapist_api=video_server.base_url,
                client_api=video_server.base_url,
            )
            await client.send("leave")
            await client.drop()  # closes the socket at once, without waiting for the server
            try:
                left = await therapist.wait_for("peer-left", timeout=15)
            except TimeoutError:
                raise AssertionError(video_server.log_tail()) from None
            assert (left["participant"], left["reason"]) == (client.participant_id, "left")
        finally:
            await close_all(therapist, client)

    run_async(scenario())


def test_the_therapist_offers_what_it_prepared_while_the_client_waited(
    video_app: LiveApp, video_server: Server
) -> None:
    """The therapist's client gathers its offer while someone waits; admitting them sends that
    offer (no gathering after the admit), and the call connects on it."""
    call = video_app.claim()

    async def scenario() -> None:
        therapist, client = VideoClient(name="therapist"), VideoClient(name="client")
        try:
            await therapist.join(video_server.base_url, call.therapist_token, call.booking)
            await therapist.connect()
            await client.join(
                video_server.base_url, call.client_token, call.booking, jurisdiction="US-NY"
            )
            await client.connect()
            assert client.participant_id in await therapist.waiting_participants(1)
            assert therapist._prepared is not None
            prepared = await therapist._prepared
            assert prepared.localDescription is not None  # gathered before the admit
            assert therapist.pc is None
            await therapist.admit(client.participant_id or "")
            await asyncio.gather(therapist.wait_until_in_call(), client.wait_until_in_call())
            await media_flows_both_ways(therapist, client)
            assert therapist.pc is prepared
            offered = next(m for m in client.messages if m["type"] == "offer")
            assert offered["sdp"] == prepared.localDescription.sdp
        finally:
            await close_all(therapist, client)

    run_async(scenario())


def test_an_outsider_is_refused_at_the_join(video_app: LiveApp, video_server: Server) -> None:
    call = video_app.claim()
    outsider = VideoClient(name="outsider")

    with pytest.raises(JoinRefused) as refused:
        run_async(
            outsider.join(
                video_server.base_url, video_app.outsider_token, call.booking, jurisdiction="US-NY"
            )
        )

    assert refused.value.status == 404
    assert refused.value.problem.get("code") == "booking_not_found"


def test_a_room_token_does_not_open_another_rooms_socket(
    video_app: LiveApp, video_server: Server
) -> None:
    mine, other = video_app.claim(), video_app.claim()

    async def scenario() -> None:
        intruder, host = VideoClient(name="intruder"), VideoClient(name="host")
        try:
            await intruder.join(video_server.base_url, mine.therapist_token, mine.booking)
            other_room = await host.join(
                video_server.base_url, other.therapist_token, other.booking
            )
            with pytest.raises(SocketClosed) as closed:
                await intruder.connect(ws_url=other_room.ws_url)
            assert closed.value.code == 4403
            assert [m["type"] for m in intruder.messages] == []  # nothing of the room
        finally:
            await close_all(intruder, host)

    run_async(scenario())


FINGERPRINT = re.compile(r"^(a=fingerprint:sha-256 )([0-9A-F]{2})", re.MULTILINE)


def alter_fingerprint(sdp: str) -> str:
    """Change the first byte of every SHA-256 fingerprint: still a valid, strong SDP."""

    def flip(match: re.Match[str]) -> str:
        return match.group(1) + f"{int(match.group(2), 16) ^ 0xFF:02X}"

    altered, count = FINGERPRINT.subn(flip, sdp)
    assert count, "no sha-256 fingerprint in the SDP"
    return altered


def test_an_altered_fingerprint_makes_the_dtls_handshake_fail(
    video_app: LiveApp, video_server: Server
) -> None:
    call = video_app.claim()

    async def scenario() -> None:
        # The therapist's offer is altered in transit (here: just before it is sent).
        therapist = VideoClient(name="therapist", outgoing_sdp=alter_fingerprint)
        client = VideoClient(name="client")
        try:
            await start_call(
                call,
                therapist=therapist,
                client=client,
                therapist_api=video_server.base_url,
                client_api=video_server.base_url,
            )
            await client.wait_for("offer", timeout=20)  # relayed: it passed the SDP checks
            await client.wait_for_dtls("failed", timeout=30)
            assert client.connection_state == "failed"
            # No media either way: the client refused the handshake, so it sends nothing and
            # decrypts nothing (the therapist's side of the handshake may have completed).
            assert client.frames_received == {"audio": 0, "video": 0}
            assert therapist.frames_received == {"audio": 0, "video": 0}
        finally:
            await close_all(therapist, client)

    run_async(scenario())


def test_two_app_processes_sharing_redis_bring_the_two_sides_together(
    video_app: LiveApp, tmp_path: Path
) -> None:
    call = video_app.claim()
    with run_redis(tmp_path) as redis_url:
        first = video_app.start_server(REDIS_URL=redis_url)
        second = video_app.start_server(REDIS_URL=redis_url)
        try:

            async def scenario() -> None:
                therapist, client = VideoClient(name="therapist"), VideoClient(name="client")
                try:
                    await start_call(
                        call,
                        therapist=therapist,
                        client=client,
                        therapist_api=first.base_url,
                        client_api=second.base_url,
                    )
                    assert therapist.info is not None and client.info is not None
                    assert first.base_url.split("//")[1] in therapist.info.ws_url
                    assert second.base_url.split("//")[1] in client.info.ws_url
                    await media_flows_both_ways(therapist, client)
                finally:
                    await close_all(therapist, client)

            run_async(scenario())
            assert first.peer_connections() == second.peer_connections() == ""
        finally:
            video_app.stop_server(first)
            video_app.stop_server(second)


def test_a_dropped_client_resumes_and_a_new_round_brings_media_back(
    video_app: LiveApp, video_server: Server
) -> None:
    call = video_app.claim()

    async def scenario() -> None:
        therapist, client = VideoClient(name="therapist"), VideoClient(name="client")
        try:
            await start_call(
                call,
                therapist=therapist,
                client=client,
                therapist_api=video_server.base_url,
                client_api=video_server.base_url,
            )
            await media_flows_both_ways(therapist, client)
            first_round = therapist.round
            seen = len(therapist.messages)

            await client.drop()  # the network went away; the call is kept
            await therapist.wait_for(
                "peer-left", lambda m: m["reason"] == "disconnected", since=seen
            )
            await client.close()  # aiortc cannot restart ICE: a new peer connection per round
            client.frames_received = {"audio": 0, "video": 0}
            assert client.resume, client.messages[:2]
            since = len(client.messages)
            joined = await client.connect()  # hello with the resume token: no second admission
            assert joined["state"] == "in_call", joined
            await client.wait_for("peer-joined", since=since)
            again = await therapist.wait_for("peer-joined", since=seen)
            assert again["round"] > (first_round or 0)
            therapist.frames_received = {"audio": 0, "video": 0}
            await media_flows_both_ways(therapist, client)
        finally:
            await close_all(therapist, client)

    run_async(scenario())
