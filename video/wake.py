"""Waking a mobile app when its call needs it (docs/video.md, "Mobile apps").

A phone puts a backgrounded app to sleep and its socket with it, so a client waiting for the
therapist may not see ``admitted`` (or the therapist arriving) until the app is woken. The
project sends no push itself: an operator names a callable in ``VIDEO_WAKE_HOOK`` (dotted
path) that takes a ``Wake`` and hands it to APNs, FCM or whatever their apps use. It is called
by a Celery task (``video.wake_send``) enqueued once the transaction that admitted the client
(``admitted``) or brought the therapist in with clients waiting (``therapist_ready``) commits:
never on a rollback, retried with back-off when the hook raises. A ``Wake`` names the user, the
room and what happened: no name, no booking time, nothing a lock screen should show.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.conf import settings
from django.utils.module_loading import import_string

from api.jobs import after_commit_task, enqueue_after_commit

ADMITTED = "admitted"
THERAPIST_READY = "therapist_ready"


@dataclass(frozen=True)
class Wake:
    user_id: str
    room_id: str
    kind: str  # ADMITTED or THERAPIST_READY


def wake_after_commit(*, user_id: uuid.UUID, room_id: uuid.UUID, kind: str) -> None:
    """Call the wake hook for ``user_id`` once the current transaction commits (nothing when
    no hook is configured)."""
    if settings.VIDEO_WAKE_HOOK:
        enqueue_after_commit(wake_send, user_id=str(user_id), room_id=str(room_id), kind=kind)


@after_commit_task("video.wake_send")
def wake_send(*, user_id: str, room_id: str, kind: str) -> None:
    """Hand one ``Wake`` to the configured hook (a push to the user's devices)."""
    if settings.VIDEO_WAKE_HOOK:
        import_string(settings.VIDEO_WAKE_HOOK)(Wake(user_id=user_id, room_id=room_id, kind=kind))
