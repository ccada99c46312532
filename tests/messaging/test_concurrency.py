"""MSG-04 on PostgreSQL with real connections: concurrent sends of one message are stored once.

Threads, each with its own connection, send through the HTTP API at the same moment (a barrier
releases them): the same ``Idempotency-Key`` and ``client_message_id`` (a client retrying on a
flaky network), or the same ``client_message_id`` under different keys (two devices' outboxes).
Exactly one message exists afterwards; every answer is a success naming that message or a 409
asking to retry, and a retry after the race gets the message.
"""

from __future__ import annotations

import uuid

import pytest

from audit.models import AuditEvent
from messaging import services
from messaging.models import Conversation, Message
from tests.concurrency import run_at_once
from tests.factories import api_client_for

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

CONTENDERS = 12


def _race(fn, count):
    results = run_at_once(fn, count)
    assert not [r for r in results if isinstance(r, BaseException)], results
    return results


def _post(user, conversation, cid, key):
    api = api_client_for(user)
    return api.post(
        f"/api/v1/conversations/{conversation.pk}/messages",
        {"client_message_id": str(cid), "body": "Are we still on for Tuesday?"},
        format="json",
        headers={"Idempotency-Key": key} if key else {},
    )


def test_msg_04_concurrent_sends_with_one_idempotency_key_store_one_message(
    conversation: Conversation, client_user
):
    cid = uuid.uuid4()
    answers = _race(lambda i: _post(client_user, conversation, cid, "retry-key"), CONTENDERS)
    ok = [a for a in answers if a.status_code in (200, 201)]
    busy = [a for a in answers if a.status_code == 409]
    assert len(ok) + len(busy) == CONTENDERS, [a.status_code for a in answers]
    assert {a.json()["code"] for a in busy} <= {"idempotency_in_progress"}
    message = Message.objects.get()
    assert {a.json()["id"] for a in ok} == {str(message.pk)}
    assert [a.status_code for a in ok].count(201) >= 1
    retry = _post(client_user, conversation, cid, "retry-key")
    assert (retry.status_code, retry.json()["id"]) == (201, str(message.pk))
    conversation.refresh_from_db()
    assert conversation.last_seq == 1
    created = AuditEvent.objects.filter(resource_type="messaging.message", action="create")
    assert created.count() == 1


def test_msg_04_concurrent_sends_of_one_client_message_id_store_one_message(
    conversation: Conversation, client_user
):
    cid = uuid.uuid4()
    answers = _race(lambda i: _post(client_user, conversation, cid, f"key-{i}"), CONTENDERS)
    assert sorted(a.status_code for a in answers) == [200] * (CONTENDERS - 1) + [201]
    message = Message.objects.get()
    assert {a.json()["id"] for a in answers} == {str(message.pk)}


def test_concurrent_sends_of_different_messages_get_consecutive_seqs(
    conversation: Conversation, client_user, therapist
):
    people = [client_user, therapist]
    answers = _race(
        lambda i: services.message_send(
            conversation_id=conversation.pk,
            sender=people[i % 2],
            body=f"message {i}",
            client_message_id=uuid.uuid4(),
            now=conversation.created_at,
        ),
        CONTENDERS,
    )
    assert sorted(m.seq for m, _ in answers) == list(range(1, CONTENDERS + 1))
    conversation.refresh_from_db()
    assert conversation.last_seq == CONTENDERS
