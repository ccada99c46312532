"""What one signalling socket knows of its call's negotiation, and the relay rules it applies.

The server starts every negotiation round itself (``peer-joined``, from a transaction in
``video.signalling`` under the room's lock) and tells each socket its round and its peers; it
tells it ``peer-left`` when a peer goes. A socket's ``Negotiation`` is exactly what it was told,
so ``offer``, ``answer`` and ``candidate`` are checked and relayed without reading the
database (docs/video.md, "Relaying"):

- a socket that was never given a round is not in the call (``not_admitted``: VID-04, a
  waiting client's SDP and candidates reach nobody);
- a message of another round than the socket's is ``stale_round``;
- the therapist offers and the other side answers (``not_your_turn``), in as many offer/answer
  exchanges as it needs in the round (a screen share renegotiates within the round);
- only the therapist announces a screen share (``share``; ``forbidden`` for anyone else);
- with no peer left in the round, ``no_peer``.

A relayed message goes to the room's channel-layer group; a receiving socket forwards it only
if it is in the same round, the sender is one of the peers it was told of, and (for what a
non-therapist sends) it is the therapist's. A round that the server replaces while a message
is in flight makes the message stale at the receiver, which drops it: its round is over, and
both sides are being told of the new one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from video.models import ParticipantRole
from video.signalling import SignalRefused

RELAYED = frozenset({"offer", "answer", "candidate", "share"})


@dataclass
class Negotiation:
    """One socket's round and peers, as the server's messages to it said."""

    role: str
    round: int | None = None
    peers: set[str] = field(default_factory=set)

    def told(self, message: dict[str, Any]) -> None:
        """Follow a message the server delivered to this socket."""
        kind = message.get("type")
        if kind == "peer-joined":
            round_ = int(message["round"])
            if round_ != self.round:
                self.round, self.peers = round_, set()
            self.peers.add(str(message["peer"]["participant"]))
        elif kind == "peer-left":
            self.peers.discard(str(message["participant"]))

    def check_outgoing(self, kind: str, round_: int) -> None:
        """``SignalRefused`` unless this socket may send ``kind`` of ``round_`` now."""
        if self.round is None:
            raise SignalRefused("not_admitted", "Wait to be admitted.")
        if round_ != self.round:
            raise SignalRefused("stale_round", f"The current round is {self.round}.")
        offerer = self.role == ParticipantRole.THERAPIST
        if kind == "share" and not offerer:
            raise SignalRefused("forbidden", "Only the therapist shares a screen.")
        if (kind == "offer" and not offerer) or (kind == "answer" and offerer):
            raise SignalRefused("not_your_turn", "The therapist offers; the other side answers.")
        if not self.peers:
            raise SignalRefused("no_peer", "Nobody else is in the call.")

    def accepts(self, *, round_: int, sender: str, to_therapist: bool) -> bool:
        """Whether a relayed message is for this socket."""
        return (
            round_ == self.round
            and sender in self.peers
            and (not to_therapist or self.role == ParticipantRole.THERAPIST)
        )
