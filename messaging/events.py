"""What the messaging services tell the sockets, through the channel layer (after commit).

Each user's open sockets (on any web process: Redis between processes) are in one group,
``messaging.user.<id>``. An event names what changed, never its content: a message by
conversation, ``seq`` and id; the socket reads it from the database, decrypts it for its own
user and audits that read (MSG-05), so no message text ever passes through the channel layer.
A failed publish (the layer unreachable) is logged and lost: delivery is at-least-once only
for a socket that resumes from its cursor, which reads the database (MSG-04).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

EVENT = "messaging.event"  # the consumer's handler: messaging_event


def user_group(user_id: uuid.UUID | str) -> str:
    return f"messaging.user.{uuid.UUID(str(user_id)).hex}"


def _publish(user_ids: list[uuid.UUID], event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        for user_id in user_ids:
            async_to_sync(layer.group_send)(user_group(user_id), {"type": EVENT, **event})
    except Exception as exc:  # noqa: BLE001 - a lost push is caught up on resume
        logger.warning("messaging: an event was not published (%s)", type(exc).__name__)


def publish_on_commit(user_ids: list[uuid.UUID], **event: Any) -> None:
    """Send ``event`` to every socket of ``user_ids`` once the current transaction commits."""
    transaction.on_commit(lambda: _publish(list(user_ids), event))
