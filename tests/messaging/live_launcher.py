"""``seed --pairs N [--messages M]``: run once against a migrated database (the environment's
DATABASE_URL); creates N client-therapist pairs, each with a confirmed booking and its open
conversation holding M messages (encrypted as the services encrypt them, written in bulk), and
prints one JSON object: per pair the conversation id, both user ids and access tokens."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _fill(conversation: Any, client: Any, therapist: Any, count: int, now: Any) -> None:
    """``count`` messages, alternating senders, as ``message_send`` writes them (in bulk)."""
    import uuid

    from messaging.crypto import body_seal
    from messaging.models import Conversation, Message

    rows = []
    for seq in range(1, count + 1):
        message_id = uuid.uuid4()
        sealed, key_id = body_seal(
            message_id=message_id, version=1, body=f"Message {seq}: how was the week? " * 3
        )
        rows.append(
            Message(
                id=message_id,
                conversation=conversation,
                seq=seq,
                sender=client if seq % 2 else therapist,
                client_message_id=uuid.uuid4(),
                body_encrypted=sealed,
                key_id=key_id,
                created_at=now - timedelta(seconds=count - seq),
            )
        )
    Message.objects.bulk_create(rows, batch_size=2000)
    Conversation.objects.filter(pk=conversation.pk).update(
        last_seq=count, client_read_seq=count, therapist_read_seq=count, activity_at=now
    )


def seed(pairs: int, messages: int = 0) -> dict[str, Any]:
    import django

    django.setup()
    from django.utils import timezone

    from api.models import Role
    from messaging import services
    from tests.factories import issue_access_token, make_user
    from tests.scheduling.conftest import make_booking, make_therapist

    now = timezone.now()
    out: dict[str, Any] = {"pairs": []}
    for _ in range(pairs):
        profile = make_therapist(now=now)
        client = make_user(role=Role.CLIENT, password=None)
        booking = make_booking(
            therapist=profile, client=client, start=now + timedelta(days=1), now=now
        )
        conversation, _ = services.conversation_open(booking_id=booking.pk, user=client, now=now)
        if messages:
            _fill(conversation, client, profile.user, messages, now)
        out["pairs"].append(
            {
                "conversation": str(conversation.pk),
                "client": str(client.pk),
                "therapist": str(profile.user_id),
                "client_token": issue_access_token(client),
                "therapist_token": issue_access_token(profile.user),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    seeding = sub.add_parser("seed")
    seeding.add_argument("--pairs", type=int, default=1)
    seeding.add_argument("--messages", type=int, default=0, help="per conversation")
    args = parser.parse_args()
    print(json.dumps(seed(args.pairs, args.messages)))  # noqa: T201 - the caller reads it


if __name__ == "__main__":
    main()
