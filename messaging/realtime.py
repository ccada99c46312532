"""The messaging socket's database work (called from ``messaging.consumers`` in a thread).

Each function is one short transaction, or one read and its audit row. What a socket delivers
is read here for its user only (``selectors``: the same visibility as the REST API) and every
delivery of message content is one audited read of its conversation, the client as patient
(MSG-05), like a page over REST.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q

from api.authentication import access_token_user
from api.models import Role, User
from api.serializers import represent
from audit.services import audit_access
from messaging import selectors, services
from messaging.errors import ConversationNotFound
from messaging.models import Conversation
from messaging.serializers import MessageOut

# A reconnecting socket gets at most this many missed messages of a conversation at once; the
# next push of that conversation (or the REST list with after_seq) brings the rest, in order.
CATCH_UP_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Peer:
    """One of the user's conversations as the socket knows it."""

    other_user_id: uuid.UUID
    role: str  # the socket user's role in it: "client" or "therapist"
    last_seq: int


def socket_user(token: str) -> User | None:
    """The user a hello's token names: a live access token of a client or therapist (staff
    with a second factor verified at sign-in, as over REST), else None."""
    found = access_token_user(token)
    if found is None:
        return None
    user, claims = found
    if user.role not in (Role.CLIENT, Role.THERAPIST):
        return None
    if user.is_staff_role and not claims.mfa:
        return None
    return user


def peers_of(*, user: User, conversation_ids: list[uuid.UUID] | None = None) -> dict[str, Peer]:
    """The user's conversations (or those of ``conversation_ids`` that are theirs)."""
    rows = Conversation.objects.filter(Q(client=user) | Q(therapist=user))
    if conversation_ids is not None:
        rows = rows.filter(pk__in=conversation_ids)
    return {
        str(pk): Peer(
            other_user_id=therapist_id if client_id == user.pk else client_id,
            role="client" if client_id == user.pk else "therapist",
            last_seq=last_seq,
        )
        for pk, client_id, therapist_id, last_seq in rows.values_list(
            "pk", "client_id", "therapist_id", "last_seq"
        )
    }


def messages_deliver(
    *, user: User, conversation_id: str, after_seq: int, limit: int = CATCH_UP_LIMIT
) -> list[dict[str, Any]]:
    """The user's visible messages of the conversation after ``after_seq`` (oldest first),
    rendered as the REST API renders them; the read is audited (its own row, written before
    the socket sends anything, as a REST read's). Empty when it is not theirs."""
    messages = selectors.messages_after(
        conversation_id=uuid.UUID(conversation_id), viewer=user, after_seq=after_seq, limit=limit
    )
    if messages:
        audit_access(
            obj=messages[0].conversation,
            action="read",
            actor=user,
            details={"via": "socket", "messages": len(messages)},
        )
    return [represent(MessageOut, m) for m in messages]


@transaction.atomic
def message_changed(*, user: User, conversation_id: str, message_id: str) -> dict[str, Any] | None:
    """An edited or deleted message as the user now sees it (audited), or None when they no
    longer see it (the other participant deleted it) or never did."""
    conversation = Conversation.objects.filter(
        Q(client=user) | Q(therapist=user), pk=conversation_id
    ).first()
    if conversation is None:
        return None
    rows = selectors.visible_messages(conversation=conversation, viewer=user).filter(pk=message_id)
    found = selectors.messages_decrypt(rows, conversation=conversation)
    if not found:
        return None
    audit_access(
        obj=conversation, action="read", actor=user, details={"via": "socket", "messages": 1}
    )
    return dict(represent(MessageOut, found[0]))


def mark_read(*, user: User, conversation_id: str, seq: int, now: datetime) -> bool:
    """The socket's ``read``: the service's receipt (False when not the user's conversation)."""
    try:
        services.conversation_mark_read(
            conversation_id=uuid.UUID(conversation_id), reader=user, up_to_seq=seq, now=now
        )
    except ConversationNotFound:
        return False
    return True
