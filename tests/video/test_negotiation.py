"""A socket's view of its negotiation (video.negotiation): the relay rules without a database.

VID-04: a socket the server never put in a round (a waiting client) relays nothing.
"""

from __future__ import annotations

import pytest

from video.negotiation import Negotiation
from video.signalling import SignalRefused

THERAPIST, CLIENT, INTERPRETER = "t-1", "c-1", "i-1"


def peer_joined(peer: str, round_: int) -> dict[str, object]:
    return {"v": 1, "type": "peer-joined", "peer": {"participant": peer}, "round": round_}


def refused(negotiation: Negotiation, kind: str, round_: int) -> str:
    with pytest.raises(SignalRefused) as caught:
        negotiation.check_outgoing(kind, round_)
    return caught.value.code


def test_vid_04_a_socket_never_given_a_round_sends_nothing() -> None:
    waiting = Negotiation(role="client")
    waiting.told({"v": 1, "type": "waiting", "therapist": "ready"})
    for kind in ("offer", "answer", "candidate"):
        assert refused(waiting, kind, 1) == "not_admitted"


def test_the_round_is_the_last_peer_joined() -> None:
    client = Negotiation(role="client")
    client.told(peer_joined(THERAPIST, 1))
    client.check_outgoing("answer", 1)
    client.told(peer_joined(THERAPIST, 2))
    assert refused(client, "answer", 1) == "stale_round"
    client.check_outgoing("candidate", 2)


def test_the_therapist_offers_and_the_other_side_answers() -> None:
    therapist, client = Negotiation(role="therapist"), Negotiation(role="client")
    therapist.told(peer_joined(CLIENT, 1))
    client.told(peer_joined(THERAPIST, 1))
    assert refused(therapist, "answer", 1) == "not_your_turn"
    assert refused(client, "offer", 1) == "not_your_turn"
    therapist.check_outgoing("offer", 1)
    client.check_outgoing("answer", 1)


def test_no_peer_once_the_peer_left() -> None:
    therapist = Negotiation(role="therapist")
    therapist.told(peer_joined(CLIENT, 3))
    therapist.told({"v": 1, "type": "peer-left", "participant": CLIENT, "reason": "left"})
    assert refused(therapist, "offer", 3) == "no_peer"


def test_a_new_round_forgets_the_peers_of_the_last() -> None:
    therapist = Negotiation(role="therapist")
    therapist.told(peer_joined(CLIENT, 1))
    therapist.told(peer_joined(INTERPRETER, 2))
    therapist.told(peer_joined(CLIENT, 2))
    assert therapist.peers == {CLIENT, INTERPRETER}
    therapist.told(peer_joined(CLIENT, 3))
    assert therapist.peers == {CLIENT}


def test_a_relay_is_accepted_only_from_a_peer_of_the_same_round() -> None:
    client = Negotiation(role="client")
    client.told(peer_joined(THERAPIST, 2))
    assert client.accepts(round_=2, sender=THERAPIST, to_therapist=False)
    assert not client.accepts(round_=1, sender=THERAPIST, to_therapist=False)  # stale in flight
    assert not client.accepts(round_=2, sender="someone-else", to_therapist=False)
    assert not Negotiation(role="client").accepts(round_=2, sender=THERAPIST, to_therapist=False)


def test_what_a_client_sends_reaches_the_therapist_only() -> None:
    """In a three-party room, a client's candidates go to the therapist, not to the interpreter
    (the therapist negotiates with each)."""
    therapist, interpreter = Negotiation(role="therapist"), Negotiation(role="interpreter")
    therapist.told(peer_joined(CLIENT, 1))
    interpreter.told(peer_joined(THERAPIST, 1))
    interpreter.peers.add(CLIENT)  # even if it knew of the client
    assert therapist.accepts(round_=1, sender=CLIENT, to_therapist=True)
    assert not interpreter.accepts(round_=1, sender=CLIENT, to_therapist=True)


def test_the_therapist_renegotiates_within_its_round_and_alone_announces_a_share() -> None:
    """A screen share is a second offer/answer of the same round, announced by ``share``:
    the therapist's only (``forbidden`` to the client), and a waiting client's reaches nobody."""
    therapist, client = Negotiation(role="therapist"), Negotiation(role="client")
    therapist.told(peer_joined(CLIENT, 4))
    client.told(peer_joined(THERAPIST, 4))
    for _ in range(2):  # the call's offer, then the share's
        therapist.check_outgoing("offer", 4)
        client.check_outgoing("answer", 4)
    therapist.check_outgoing("share", 4)
    assert refused(client, "share", 4) == "forbidden"
    assert refused(therapist, "share", 3) == "stale_round"
    assert refused(Negotiation(role="client"), "share", 4) == "not_admitted"
    therapist.told({"v": 1, "type": "peer-left", "participant": CLIENT, "reason": "left"})
    assert refused(therapist, "share", 4) == "no_peer"
