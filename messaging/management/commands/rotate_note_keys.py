"""``manage.py rotate_note_keys``: re-encrypt session notes, client profiles and messages (bodies,
earlier versions, attachments' files and names) written under an older field-encryption key
with the current one (``FIELD_ENCRYPTION_KEY_ID``).

Rotation: add the new key to ``FIELD_ENCRYPTION_KEYS`` and point ``FIELD_ENCRYPTION_KEY_ID`` at
it (new writes use it, old rows still decrypt with the key their ``key_id`` names), run this
command until it reports nothing remaining, then remove the old key. Resumable: every batch
commits on its own, so an interrupted run is simply run again. ``SECRET_KEY`` plays no part.

It lives in messaging, the top layer, because it drives scheduling's rotations and messaging's
alike (scheduling may not import messaging: docs/architecture.md).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from messaging.services import message_keys_rotate
from scheduling.clients.services import client_profile_keys_rotate
from scheduling.notes.services import note_keys_rotate


class Command(BaseCommand):
    help = "Re-encrypt notes, client profiles and messages under the current key (resumable)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=200)
        parser.add_argument(
            "--max-batches", type=int, default=None, help="stop after this many batches of each"
        )

    def handle(self, *args: Any, batch_size: int, max_batches: int | None, **options: Any) -> None:
        notes = note_keys_rotate(batch_size=batch_size, max_batches=max_batches)
        profiles = client_profile_keys_rotate(batch_size=batch_size, max_batches=max_batches)
        messages = message_keys_rotate(batch_size=batch_size, max_batches=max_batches)
        remaining = notes.remaining + profiles.remaining + sum(r.remaining for r in messages)
        self.stdout.write(
            f"rotate_note_keys: {notes.rotated} note versions, {profiles.rotated} client "
            f"profiles and {sum(r.rotated for r in messages)} message rows (bodies, versions, "
            f"attachments) re-encrypted; {remaining} rows remaining"
        )
