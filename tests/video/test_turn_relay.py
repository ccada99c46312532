"""TURN (VID-08) with a real coturn on loopback: the credentials a join mints allocate a relay
candidate, an expired one is refused, and two peers that may only use relayed candidates
meet through coturn and exchange media."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCPeerConnection

from tests.video.webrtc_support import (
    Coturn,
    LiveApp,
    Server,
    close_all,
    expired_turn_credential,
    run_async,
    start_call,
)
from video.client import VideoClient, ice_configuration

pytestmark = pytest.mark.webrtc


async def gathered_sdp(ice_servers: list[dict[str, object]]) -> str:
    """The SDP of an offer once gathering is over (aiortc puts every candidate in it)."""
    pc = RTCPeerConnection(configuration=ice_configuration(ice_servers))
    try:
        pc.addTransceiver("audio")
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp
    finally:
        await pc.close()


def candidates(sdp: str, kind: str) -> list[str]:
    lines = sdp.splitlines()
    return [line for line in lines if line.startswith("a=candidate:") and f" typ {kind}" in line]


def test_the_credentials_of_a_join_allocate_a_relay_candidate(
    video_app: LiveApp, video_server: Server, coturn: Coturn
) -> None:
    call = video_app.claim()
    therapist = VideoClient(name="therapist")
    info = run_async(therapist.join(video_server.base_url, call.therapist_token, call.booking))
    turn = [s for s in info.ice_servers if any(str(u).startswith("turn:") for u in s["urls"])]
    assert turn and turn[0]["urls"] == [coturn.url]
    assert coturn.secret not in str(info)  # the secret never leaves the server

    sdp = run_async(gathered_sdp(info.ice_servers))

    relays = candidates(sdp, "relay")
    assert relays, sdp
    assert all(" 127.0.0.1 " in line for line in relays)


def test_coturn_refuses_an_expired_credential(coturn: Coturn) -> None:
    username, password = expired_turn_credential(coturn.secret)
    servers: list[dict[str, object]] = [
        {"urls": [coturn.url], "username": username, "credential": password}
    ]

    sdp = run_async(gathered_sdp(servers))

    assert candidates(sdp, "host"), sdp  # gathering worked
    assert not candidates(sdp, "relay"), sdp  # but coturn allocated nothing
    refusal = f"user <{username}>: incoming packet message processed, error 401"
    assert coturn.wait_for_log(refusal), coturn.log.read_text()[-3000:]


def test_two_relay_only_peers_meet_through_coturn(
    video_app: LiveApp, video_server: Server, coturn: Coturn
) -> None:
    call = video_app.claim()

    async def scenario() -> None:
        therapist = VideoClient(name="therapist", relay_only=True)
        client = VideoClient(name="client", relay_only=True)
        try:
            await start_call(
                call,
                therapist=therapist,
                client=client,
                therapist_api=video_server.base_url,
                client_api=video_server.base_url,
            )
            await asyncio.gather(
                therapist.wait_for_frames(audio=20, video=20),
                client.wait_for_frames(audio=20, video=20),
            )
            for peer in (therapist, client):
                assert peer.dtls_state() == "connected"
                pair = peer.selected_pair()
                assert pair is not None
                assert (pair.local_type, pair.remote_type) == ("relay", "relay"), pair
                assert pair.local_address[0] == pair.remote_address[0] == "127.0.0.1"
                assert 50000 <= pair.local_address[1] <= 50999, pair  # coturn's relay ports
        finally:
            await close_all(therapist, client)

    run_async(scenario())
