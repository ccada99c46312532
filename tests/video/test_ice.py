"""video/ice.py: of several nominated pairs, a peer sends on the highest-priority one.

aioice's own agent, candidates and STUN protocols; the checks' outcomes are set as a check
would leave them (succeeded, nominated) and handed to ``check_complete`` in the order that lost
the direct path in a call: the direct pair's check first, the relayed one's a moment later.
"""

from __future__ import annotations

import asyncio

import aioice.ice
import pytest
from aioice.candidate import Candidate, candidate_priority
from aiortc import RTCConfiguration

from video.ice import SelectedPair, peer_connection


@pytest.fixture(autouse=True)
def ice_installed() -> None:
    """What every peer connection of the project does when it is made."""

    async def made() -> None:
        await peer_connection(RTCConfiguration(iceServers=[])).close()

    asyncio.run(made())


def _candidate(kind: str, port: int) -> Candidate:
    return Candidate(
        foundation=f"{kind}{port}",
        component=1,
        transport="udp",
        priority=candidate_priority(1, kind),
        host="127.0.0.1",
        port=port,
        type=kind,
    )


async def _selected(*, controlling: bool, completed_first: str) -> tuple[str, bool]:
    """Two nominated pairs of one component, a direct one and one whose local candidate is
    relayed, completed in the given order: the kind of the pair the agent sends on, and
    whether ICE completed."""
    agent = aioice.ice.Connection(ice_controlling=controlling, components=1)
    pairs = {}
    for kind, port in (("host", 5000), ("relay", 5002)):
        protocol = aioice.ice.StunProtocol(agent)
        protocol.local_candidate = _candidate(kind, port)
        pair = aioice.ice.CandidatePair(protocol, _candidate("host", 6000))
        pair.state = aioice.ice.CandidatePair.State.SUCCEEDED
        pair.nominated = True
        agent._check_list.append(pair)
        pairs[kind] = pair
    for kind in sorted(pairs, key=lambda kind: kind != completed_first):
        agent.check_complete(pairs[kind])
    return agent._nominated[1].local_candidate.type, agent._check_list_done


@pytest.mark.parametrize("controlling", [True, False], ids=["controlling", "controlled"])
def test_a_relayed_pair_nominated_after_the_direct_one_does_not_replace_it(
    controlling: bool,
) -> None:
    selected = asyncio.run(_selected(controlling=controlling, completed_first="host"))
    assert selected == ("host", True)


@pytest.mark.parametrize("controlling", [True, False], ids=["controlling", "controlled"])
def test_a_direct_pair_nominated_after_a_relayed_one_replaces_it(controlling: bool) -> None:
    selected = asyncio.run(_selected(controlling=controlling, completed_first="relay"))
    assert selected == ("host", True)


def test_a_pair_through_turn_on_either_side_is_relayed() -> None:
    def pair(local: str, remote: str) -> SelectedPair:
        return SelectedPair(local, ("127.0.0.1", 1), remote, ("127.0.0.1", 2))

    assert [pair("host", "host").relayed, pair("relay", "host").relayed] == [False, True]
    assert [pair("srflx", "relay").relayed, pair("prflx", "srflx").relayed] == [True, False]
