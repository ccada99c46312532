"""asyncapi.yaml's messaging channel is the socket's contract: the same frame types each way
and error codes as messaging/consumers.py, every close code described, and sample frames (as
the socket tests receive them) valid against its payloads. The whole document is checked
against the official AsyncAPI 3 schema by tests/video/test_asyncapi.py."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from messaging.consumers import CLIENT_TYPES, CLOSE_CODES, ERROR_CODES, SERVER_TYPES
from tests.video.test_asyncapi import DOC, refs, resolve

ID = "5b1e0c2a-8f3d-4e6a-9b7c-1d2e3f4a5b6c"
MESSAGE = {
    "id": ID,
    "conversation": ID,
    "seq": 3,
    "sender": ID,
    "kind": "text",
    "client_message_id": ID,
    "body": "<b>stays text</b>",
    "attachments": [
        {
            "id": ID,
            "name": "diary.txt",
            "content_type": "text/plain",
            "size": 12,
            "created_at": "2026-11-03T14:20:00Z",
        }
    ],
    "version": 1,
    "edited": False,
    "deleted": False,
    "created_at": "2026-11-03T14:20:00Z",
    "edited_at": None,
    "deleted_at": None,
}
CLIENT_SAMPLES: dict[str, list[dict[str, Any]]] = {
    "hello": [{"token": "eyJ.a.b"}, {"token": "eyJ.a.b", "resume": {ID: 2}}],
    "typing": [{"conversation": ID, "typing": True}],
    "read": [{"conversation": ID, "seq": 0}],
}
SERVER_SAMPLES: dict[str, list[dict[str, Any]]] = {
    "ready": [{"conversations": {ID: 4}}, {"conversations": {}}],
    "message": [{"conversation": ID, "message": MESSAGE}],
    "changed": [{"conversation": ID, "message": {**MESSAGE, "body": None, "deleted": True}}],
    "removed": [{"conversation": ID, "id": ID}],
    "receipt": [{"conversation": ID, "by": "client", "seq": 3}],
    "typing": [{"conversation": ID, "by": "therapist", "typing": False}],
    "error": [{"code": "not_found", "detail": "No such conversation."}],
}


def messages_of(action: str) -> dict[str, dict[str, Any]]:
    (operation,) = [
        op
        for op in DOC["operations"].values()
        if op["action"] == action and op["channel"] == {"$ref": "#/channels/messages"}
    ]
    return {
        message["name"]: message
        for message in (resolve(resolve(m["$ref"])["$ref"]) for m in operation["messages"])
    }


def test_the_channel_is_the_socket_and_takes_no_token_in_its_address() -> None:
    channel = DOC["channels"]["messages"]
    assert channel["address"] == "/ws/messages/"
    for ref in refs(channel):
        resolve(ref)
    for code in CLOSE_CODES:
        assert str(code) in channel["description"]


def test_frame_types_and_error_codes_match_the_consumer() -> None:
    assert set(messages_of("receive")) == set(CLIENT_TYPES)
    assert set(messages_of("send")) == set(SERVER_TYPES)
    error = messages_of("send")["error"]["payload"]["properties"]["code"]["enum"]
    assert set(error) == set(ERROR_CODES)


@pytest.mark.parametrize(
    ("action", "samples"), [("receive", CLIENT_SAMPLES), ("send", SERVER_SAMPLES)]
)
def test_samples_validate_and_unknown_fields_do_not(
    action: str, samples: dict[str, list[dict[str, Any]]]
) -> None:
    messages = messages_of(action)
    assert set(samples) == set(messages)
    for name, cases in samples.items():
        schema = {**messages[name]["payload"], "components": DOC["components"]}
        for fields in cases:
            jsonschema.validate({"type": name, **fields}, schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"type": name, **cases[0], "extra": 1}, schema)
