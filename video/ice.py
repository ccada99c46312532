"""The ICE agent under every aiortc peer of the project (aioice): which path a call takes.

aioice's controlling agent nominates aggressively: every pair it checks carries USE-CANDIDATE,
so several pairs of a component can end up nominated, on both sides. RFC 5245 has both agents
then send on the highest-priority nominated pair (sections 8.1.1.2 and 11.1.1); aioice
keeps the pair whose check completed *last*. A check through TURN takes a hop longer than the
direct one started with it, so when the two run together (a triggered check) both peers ended up
sending through the relay although the direct path worked: TURN bandwidth and latency for
nothing, and a call reported as relayed (docs/video.md, "Call quality").

``peer_connection`` makes every RTCPeerConnection of the project (the Python client, the
pre-call client and echo) keep the highest-priority nominated pair instead. Pair priority is
computed the same way on both sides (RFC 5245 section 5.7.2), so the two agents agree on it.
This reaches into aioice's ``Connection.check_complete`` and ``_nominated``: ADR 0010.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection

_check_complete = aioice.ice.Connection.check_complete


def _pair_priority(connection: aioice.ice.Connection, pair: aioice.ice.CandidatePair) -> int:
    return aioice.ice.candidate_pair_priority(
        pair.local_candidate, pair.remote_candidate, connection.ice_controlling
    )


def _check_complete_keeping_the_best(
    connection: aioice.ice.Connection, pair: aioice.ice.CandidatePair
) -> None:
    """aioice's ``check_complete``, except that a nominated pair of lower priority than the one
    already selected for its component does not replace it."""
    kept = connection._nominated.get(pair.component)
    _check_complete(connection, pair)
    selected = connection._nominated.get(pair.component)
    if (
        kept is not None
        and selected is pair
        and pair is not kept
        and _pair_priority(connection, pair) < _pair_priority(connection, kept)
    ):
        connection._nominated[pair.component] = kept


def peer_connection(configuration: RTCConfiguration) -> RTCPeerConnection:
    """A new RTCPeerConnection whose ICE agent keeps the best nominated pair (above)."""
    aioice.ice.Connection.check_complete = _check_complete_keeping_the_best  # type: ignore[method-assign,assignment]
    return RTCPeerConnection(configuration=configuration)


@dataclass(frozen=True)
class SelectedPair:
    local_type: str
    local_address: tuple[str, int]
    remote_type: str
    remote_address: tuple[str, int]

    @property
    def relayed(self) -> bool:
        return "relay" in (self.local_type, self.remote_type)


def selected_pair(pc: RTCPeerConnection | None) -> SelectedPair | None:
    """The candidate pair the media transport sends on, once ICE has chosen one."""
    for transceiver in pc.getTransceivers() if pc is not None else []:
        transport: Any = transceiver.receiver.transport
        if transport is None:
            continue
        pair = transport.transport._connection._nominated.get(1)
        if pair is None:
            return None
        return SelectedPair(
            local_type=pair.local_candidate.type,
            local_address=pair.local_addr,
            remote_type=pair.remote_candidate.type,
            remote_address=pair.remote_addr,
        )
    return None
