"""The messaging socket, ``/ws/messages/`` (in-process, in-memory channel layer).

The token comes in the first message; pushes carry what the REST API returns; a reconnecting
socket gets what it missed, in order (MSG-04); a delivery over the socket is an audited read
with the client as patient (MSG-05); no one receives another pair's messages or typing (MSG-01).
Across two real processes through Redis: tests/messaging/test_live.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import datetime
from typing import Any
from unittest import mock

import jsonschema
import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from api.models import Role
from audit.models import AuditEvent
from messaging import events, services
from messaging.models import Conversation
from messaging.routing import websocket_urlpatterns
from tests.factories import issue_access_token, make_user
from tests.messaging.test_asyncapi import DOC, messages_of
from tests.video.signalling_support import GoneClient, db, run_async

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 3


@pytest.fixture(autouse=True)
def _in_memory_layer(settings: Any) -> None:
    """Each test runs on a loop of its own (channels_redis binds to its first loop)."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


async def opened() -> WebsocketCommunicator:
    ws = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/messages/")
    connected, _ = await ws.connect(timeout=TIMEOUT)
    assert connected
    return ws


async def frame(ws: WebsocketCommunicator, kind: str | None = None) -> dict[str, Any]:
    output = await ws.receive_output(timeout=TIMEOUT)
    assert output["type"] == "websocket.send", output
    message = json.loads(output["text"])
    if kind is not None:
        assert message["type"] == kind, message
    return message


async def closed_with(ws: WebsocketCommunicator) -> int:
    output = await ws.receive_output(timeout=TIMEOUT)
    assert output["type"] == "websocket.close", output
    return int(output["code"])


async def hello(ws: WebsocketCommunicator, user: Any, **fields: Any) -> dict[str, Any]:
    token = await db(issue_access_token, user)
    await ws.send_to(text_data=json.dumps({"type": "hello", "token": token, **fields}))
    return await frame(ws, "ready")


def _send(conversation: Conversation, sender: Any, body: str) -> Any:
    message, _ = services.message_send(
        conversation_id=conversation.pk,
        sender=sender,
        body=body,
        client_message_id=uuid.uuid4(),
        now=datetime.now().astimezone(),
    )
    return message


@run_async
async def test_a_sent_message_reaches_the_other_participants_socket_and_is_audited(
    conversation, client_user, therapist
) -> None:
    ws = await opened()
    ready = await hello(ws, therapist)
    assert ready["conversations"] == {str(conversation.pk): 0}
    before = await db(AuditEvent.objects.count)
    await db(_send, conversation, client_user, "Can we move Thursday?")
    pushed = await frame(ws, "message")
    assert pushed["conversation"] == str(conversation.pk)
    assert (pushed["message"]["seq"], pushed["message"]["body"]) == (1, "Can we move Thursday?")
    schema = messages_of("send")["message"]["payload"]
    jsonschema.validate(pushed, {**schema, "components": DOC["components"]})  # as documented
    events = await db(lambda: list(AuditEvent.objects.order_by("id")[before:]))
    socket_reads = [e for e in events if e.details.get("via") == "socket"]
    assert [(e.action, e.actor_id, e.patient_id) for e in socket_reads] == [
        ("read", therapist.pk, client_user.pk)
    ]
    await ws.disconnect()


@run_async
async def test_msg_04_a_reconnecting_socket_gets_what_it_missed_in_order(
    conversation, client_user, therapist
) -> None:
    for i in range(1, 6):
        await db(_send, conversation, client_user if i % 2 else therapist, f"message {i}")
    ws = await opened()
    await hello(ws, therapist, resume={str(conversation.pk): 2})
    missed = [(await frame(ws, "message"))["message"]["seq"] for _ in range(3)]
    assert missed == [3, 4, 5]
    assert await ws.receive_nothing(timeout=0.2)
    await db(_send, conversation, client_user, "message 6")
    assert (await frame(ws, "message"))["message"]["seq"] == 6
    await ws.disconnect()


@run_async
async def test_msg_04_a_push_that_overtakes_another_is_delivered_after_it(
    conversation, client_user, therapist
) -> None:
    """Pushes from two processes may cross: the socket reads the gap from the database."""
    ws = await opened()
    await hello(ws, therapist)
    first = await db(_send, conversation, client_user, "first")
    assert (await frame(ws, "message"))["message"]["id"] == str(first.pk)
    # The second's push is late (another process): the third's arrives first.
    with mock.patch.object(events, "_publish"):
        second = await db(_send, conversation, client_user, "second")
    third = await db(_send, conversation, client_user, "third")
    got = [(await frame(ws, "message"))["message"]["id"] for _ in range(2)]
    assert got == [str(second.pk), str(third.pk)]
    # The late push of the second arrives now: already delivered, dropped.
    await db(
        events._publish,
        [therapist.pk],
        {"kind": "message", "conversation": str(conversation.pk), "seq": 2, "message": ""},
    )
    assert await ws.receive_nothing(timeout=0.2)
    await ws.disconnect()


@run_async
async def test_edits_reach_both_and_a_deletion_removes_it_from_the_other_side(
    conversation, client_user, therapist
) -> None:
    client_ws, therapist_ws = await opened(), await opened()
    await hello(client_ws, client_user)
    await hello(therapist_ws, therapist)
    message = await db(_send, conversation, client_user, "typo")
    await frame(client_ws, "message")
    await frame(therapist_ws, "message")
    await db(
        services.message_edit,
        conversation_id=conversation.pk,
        message_id=message.pk,
        editor=client_user,
        body="fixed",
        now=datetime.now().astimezone(),
    )
    for ws in (client_ws, therapist_ws):
        changed = await frame(ws, "changed")
        assert (changed["message"]["body"], changed["message"]["version"]) == ("fixed", 2)
    await db(
        services.message_delete,
        conversation_id=conversation.pk,
        message_id=message.pk,
        by=client_user,
        now=datetime.now().astimezone(),
    )
    mine = await frame(client_ws, "changed")
    assert (mine["message"]["deleted"], mine["message"]["body"]) == (True, None)
    assert await frame(therapist_ws, "removed") == {
        "type": "removed",
        "conversation": str(conversation.pk),
        "id": str(message.pk),
    }
    await client_ws.disconnect()
    await therapist_ws.disconnect()


@run_async
async def test_typing_and_read_receipts_go_to_the_other_participant_only(
    conversation, client_user, therapist, other_therapist
) -> None:
    client_ws, therapist_ws, stranger_ws = await opened(), await opened(), await opened()
    await hello(client_ws, client_user)
    await hello(therapist_ws, therapist)
    await hello(stranger_ws, other_therapist)
    conv = str(conversation.pk)
    await client_ws.send_to(
        text_data=json.dumps({"type": "typing", "conversation": conv, "typing": True})
    )
    assert await frame(therapist_ws, "typing") == {
        "type": "typing",
        "conversation": conv,
        "by": "client",
        "typing": True,
    }
    await db(_send, conversation, therapist, "Yes, Thursday 10:00?")
    await frame(client_ws, "message")
    await frame(therapist_ws, "message")
    await client_ws.send_to(text_data=json.dumps({"type": "read", "conversation": conv, "seq": 1}))
    for ws in (therapist_ws, client_ws):
        assert await frame(ws, "receipt") == {
            "type": "receipt",
            "conversation": conv,
            "by": "client",
            "seq": 1,
        }
    # MSG-01: a stranger can neither type into nor mark someone else's conversation.
    for kind in ("typing", "read"):
        await stranger_ws.send_to(
            text_data=json.dumps({"type": kind, "conversation": conv, "typing": True, "seq": 1})
        )
        assert (await frame(stranger_ws, "error"))["code"] == "not_found"
    assert await stranger_ws.receive_nothing(timeout=0.2)
    assert await client_ws.receive_nothing(timeout=0.1)
    for ws in (client_ws, therapist_ws, stranger_ws):
        await ws.disconnect()


@run_async
async def test_the_first_message_must_be_a_hello_with_a_live_token(
    client_user, therapist, compliance_officer
) -> None:
    ws = await opened()
    await ws.send_to(text_data=json.dumps({"type": "typing"}))
    assert await closed_with(ws) == 4400
    ws = await opened()
    await ws.send_to(text_data=json.dumps({"type": "hello", "token": "not-a-token"}))
    assert await closed_with(ws) == 4401
    for refused in (
        await db(issue_access_token, therapist, mfa=False),  # staff without a second factor
        await db(issue_access_token, compliance_officer),  # MSG-01: no staff reading
    ):
        ws = await opened()
        await ws.send_to(text_data=json.dumps({"type": "hello", "token": refused}))
        assert await closed_with(ws) == 4401
    ws = await opened()
    await ws.send_to(text_data="x" * 10_000)
    assert await closed_with(ws) == 4413


@run_async
async def test_bad_frames_after_hello_are_errors_not_crashes(client_user) -> None:
    ws = await opened()
    await hello(ws, client_user)
    for text in ("not json", "[1]", '{"type": "nope"}', '{"type": "read", "conversation": "x"}'):
        await ws.send_to(text_data=text)
        assert (await frame(ws, "error"))["code"] in ("bad_message", "unknown_type")
    outsider = await db(make_user, role=Role.CLIENT)
    assert outsider.pk != client_user.pk
    await ws.disconnect()


@run_async
async def test_a_client_that_has_gone_costs_the_socket_nothing(
    client_user, caplog: pytest.LogCaptureFixture
) -> None:
    """A reply to a client that has closed its connection fails (the server raises ``OSError``):
    the socket lets it go without an error and still handles the disconnect behind it."""
    gone = GoneClient(URLRouter(websocket_urlpatterns))
    ws = WebsocketCommunicator(gone, "/ws/messages/")
    connected, _ = await ws.connect(timeout=TIMEOUT)
    assert connected
    await hello(ws, client_user)
    gone.gone = True
    unknown = str(uuid.uuid4())
    await ws.send_to(text_data=json.dumps({"type": "typing", "conversation": unknown, "typing": 1}))
    await asyncio.wait_for(gone.refused.wait(), TIMEOUT)  # the error reply could not be sent
    await ws.disconnect()  # the consumer is alive to handle it
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
