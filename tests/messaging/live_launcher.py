"""``seed --pairs N``: run once against a migrated database (the environment's DATABASE_URL);
creates N client-therapist pairs, each with a confirmed booking and its open conversation, and
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


def seed(pairs: int) -> dict[str, Any]:
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
    args = parser.parse_args()
    print(json.dumps(seed(args.pairs)))  # noqa: T201 - the caller reads it


if __name__ == "__main__":
    main()
