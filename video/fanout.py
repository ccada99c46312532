"""Carrying out the signalling services' effects through the channel layer (docs/video.md).

A ``Send`` goes to one socket's channel, a ``Broadcast`` to the room's group, a
``TherapistChanged`` to the therapist's group; the receiving sockets (``video.consumers``)
handle them as ``video.deliver`` and ``video.therapist`` events. Used by the sockets for what
is not their own, and by the lost-process sweep (``video.liveness``), which runs in a worker and
reaches the sockets of live processes the same way.
"""

from __future__ import annotations

from typing import Any

from video import signalling
from video.signalling import Broadcast, Effect, Send, TherapistChanged

DELIVER = "video.deliver"
RELAY = "video.relay"
THERAPIST_CHANGED = "video.therapist"


async def effects_send(layer: Any, effects: list[Effect]) -> None:
    """Send ``effects``, in order, through ``layer``."""
    for effect in effects:
        if isinstance(effect, Send):
            await layer.send(
                effect.channel,
                {
                    "type": DELIVER,
                    "participant": effect.participant,
                    "message": effect.message,
                    "close": effect.close,
                },
            )
        elif isinstance(effect, Broadcast):
            await layer.group_send(
                signalling.room_group(effect.room_id),
                {
                    "type": DELIVER,
                    "participant": None,
                    "message": effect.message,
                    "close": effect.close,
                },
            )
        elif isinstance(effect, TherapistChanged):
            await layer.group_send(
                signalling.therapist_group(effect.user_id),
                {"type": THERAPIST_CHANGED, "room": effect.room_id},
            )
