"""The database keeps the conversation and message invariants, whatever the caller."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from django.db import IntegrityError, transaction

from api.models import User
from audit.registry import resource_of
from messaging.models import Conversation, Message, MessageVersion

pytestmark = pytest.mark.django_db


def _conversation(client: User, therapist: User, now: datetime) -> Conversation:
    return Conversation.objects.create(
        client=client, therapist=therapist, created_at=now, activity_at=now
    )


def _message(
    conversation: Conversation, sender: User, seq: int, now: datetime, **fields
) -> Message:
    return Message.objects.create(
        conversation=conversation,
        seq=seq,
        sender=sender,
        client_message_id=fields.pop("client_message_id", uuid.uuid4()),
        body_encrypted="v1:dev-1:x",
        key_id="dev-1",
        created_at=now,
        **fields,
    )


def _refused(make) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        make()


def test_one_conversation_per_client_and_therapist(client_user, therapist, fixed_clock):
    _conversation(client_user, therapist, fixed_clock)
    _refused(lambda: _conversation(client_user, therapist, fixed_clock))
    assert Conversation.objects.count() == 1


def test_a_conversation_has_two_different_people(client_user, fixed_clock):
    _refused(lambda: _conversation(client_user, client_user, fixed_clock))


def test_read_receipts_never_pass_the_last_message(client_user, therapist, fixed_clock):
    conversation = _conversation(client_user, therapist, fixed_clock)
    _refused(lambda: Conversation.objects.filter(pk=conversation.pk).update(client_read_seq=1))


def test_messages_are_numbered_once_per_conversation(client_user, therapist, fixed_clock):
    conversation = _conversation(client_user, therapist, fixed_clock)
    _message(conversation, client_user, 1, fixed_clock)
    _refused(lambda: _message(conversation, therapist, 1, fixed_clock))
    _refused(lambda: _message(conversation, therapist, 0, fixed_clock))


def test_a_client_chosen_id_names_one_message_of_its_sender(client_user, therapist, fixed_clock):
    conversation = _conversation(client_user, therapist, fixed_clock)
    chosen = uuid.uuid4()
    _message(conversation, client_user, 1, fixed_clock, client_message_id=chosen)
    _refused(lambda: _message(conversation, client_user, 2, fixed_clock, client_message_id=chosen))
    _message(conversation, therapist, 2, fixed_clock, client_message_id=chosen)  # another sender


def test_an_edited_message_says_when(client_user, therapist, fixed_clock):
    conversation = _conversation(client_user, therapist, fixed_clock)
    _refused(lambda: _message(conversation, client_user, 1, fixed_clock, version=2))
    _refused(lambda: _message(conversation, client_user, 1, fixed_clock, kind="html"))


def test_a_version_is_kept_once(client_user, therapist, fixed_clock):
    message = _message(
        _conversation(client_user, therapist, fixed_clock), client_user, 1, fixed_clock
    )
    MessageVersion.objects.create(
        message=message,
        version=1,
        body_encrypted="v1:dev-1:y",
        key_id="dev-1",
        created_at=fixed_clock,
    )
    _refused(
        lambda: MessageVersion.objects.create(
            message=message, version=1, body_encrypted="z", key_id="dev-1", created_at=fixed_clock
        )
    )


def test_conversations_and_messages_are_the_clients_record(client_user, therapist, fixed_clock):
    """MSG-05: every protected row names the client as its patient."""
    conversation = _conversation(client_user, therapist, fixed_clock)
    message = _message(conversation, therapist, 1, fixed_clock)
    version = MessageVersion(message=message, version=1, created_at=fixed_clock)
    for row in (conversation, message, version):
        resource = resource_of(row)
        assert resource is not None
        assert resource.patient_id(row) == client_user.pk
