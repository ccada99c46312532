"""Attachment files no row names: a send that stored its file and then rolled back after the
send's own transaction (a caller's transaction, a failed commit) or crashed leaves its
encrypted file behind (``services._attach`` removes it itself on any earlier failure). Run
daily by the ``messaging_orphan_files`` job (and ``manage.py messaging_orphan_files``).

Through Django's storage API only (``listdir``, ``get_modified_time``, ``delete``), so it works
on local files and on S3 alike. Only names the app writes (``<32 hex>.bin`` at the top of the
storage) are considered; a file is deleted when no ``Attachment`` row names it and it was last
written more than ``MESSAGING_ORPHAN_GRACE_SECONDS`` ago, so the file of a send still in its
transaction is never taken. Safe to run twice, or beside itself or the retention job: a file
gone meanwhile is skipped.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from django.conf import settings

from messaging.attachments import storage
from messaging.models import Attachment

STORED_NAME = re.compile(r"^[0-9a-f]{32}\.bin$")


def attachment_orphans_delete(*, now: datetime, batch_size: int = 500) -> int:
    """Delete the stored attachment files no row names that are older than the grace period
    before ``now``; returns how many were deleted."""
    files = storage()
    cutoff = now - timedelta(seconds=settings.MESSAGING_ORPHAN_GRACE_SECONDS)
    names = sorted(name for name in files.listdir("")[1] if STORED_NAME.match(name))
    deleted = 0
    for start in range(0, len(names), batch_size):
        batch = names[start : start + batch_size]
        named = set(
            Attachment.objects.filter(storage_name__in=batch).values_list("storage_name", flat=True)
        )
        for name in batch:
            if name in named:
                continue
            try:
                written = files.get_modified_time(name)
            except FileNotFoundError:  # deleted meanwhile (another run, retention)
                continue
            if written < cutoff:
                files.delete(name)
                deleted += 1
    return deleted
