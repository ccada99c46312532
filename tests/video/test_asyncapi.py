"""asyncapi.yaml: the machine-readable contract of the signalling protocol.

It is validated against the official AsyncAPI 3.0.0 JSON schema (npm's ``@asyncapi/specs``,
installed by ``make test``), checked structurally (every $ref resolves, every operation names the
room channel's messages), against video/protocol.py (the same message types, each way, and the
same error codes) and with sample messages validated by jsonschema against its payloads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.conftest import _need
from tests.video.signalling_support import CANDIDATE, CHROME_SDP
from video.protocol import CLIENT_TYPES, CLOSE_CODES, ERROR_CODES, SERVER_TYPES

DOC: dict[str, Any] = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "asyncapi.yaml").read_text()
)
PID = "5b1e0c2a-8f3d-4e6a-9b7c-1d2e3f4a5b6c"
OFFICIAL_SCHEMA = (
    Path(__file__).resolve().parents[2]
    / ".venv/npm/node_modules/@asyncapi/specs/schemas/3.0.0-without-$id.json"
)


@pytest.fixture(scope="module")
def asyncapi_3_validator() -> jsonschema.protocols.Validator:
    if not OFFICIAL_SCHEMA.exists():
        _need("needs npm's @asyncapi/specs (make test installs it where npm is)")
    schema = json.loads(OFFICIAL_SCHEMA.read_text())
    return jsonschema.validators.validator_for(schema)(schema)


def test_the_document_is_valid_asyncapi_3(asyncapi_3_validator) -> None:
    errors = [f"{list(e.path)}: {e.message}" for e in asyncapi_3_validator.iter_errors(DOC)]
    assert errors == []


def test_the_official_schema_catches_a_broken_document(asyncapi_3_validator) -> None:
    broken = {**DOC, "info": {"title": "no version"}, "operations": {"x": {"action": "shout"}}}
    assert len(list(asyncapi_3_validator.iter_errors(broken))) >= 2


def resolve(ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = DOC
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for item in node for r in refs(item)]
    return []


def payload_schema(message: dict[str, Any]) -> dict[str, Any]:
    """The message's payload with the document's components inlined for jsonschema."""
    return {**message["payload"], "components": DOC["components"]}


def operation_messages(action: str) -> dict[str, dict[str, Any]]:
    room = {"$ref": "#/channels/room"}  # the messaging channel: tests/messaging/test_asyncapi.py
    (operation,) = [
        op for op in DOC["operations"].values() if op["action"] == action and op["channel"] == room
    ]
    return {
        message["name"]: message
        for message in (resolve(resolve(m["$ref"])["$ref"]) for m in operation["messages"])
    }


def test_document_shape() -> None:
    assert DOC["asyncapi"] == "3.0.0"
    assert DOC["channels"]["room"]["address"] == "/ws/video/{room_id}/"
    assert "token" not in DOC["channels"]["room"]["address"]  # VID-03
    for ref in refs(DOC):
        resolve(ref)
    for code in CLOSE_CODES:
        assert str(code) in DOC["info"]["description"]


def test_message_types_match_the_protocol() -> None:
    """Every type the server receives (action receive) and sends is in video/protocol.py,
    and the other way round."""
    assert set(operation_messages("receive")) == set(CLIENT_TYPES)
    assert set(operation_messages("send")) == set(SERVER_TYPES)
    for name, message in {**operation_messages("receive"), **operation_messages("send")}.items():
        assert message["payload"]["properties"]["type"] == {"const": name}


def test_error_codes_match_the_protocol() -> None:
    error = operation_messages("send")["error"]
    assert set(error["payload"]["properties"]["code"]["enum"]) == set(ERROR_CODES)


CLIENT_SAMPLES: dict[str, list[dict[str, Any]]] = {
    "hello": [
        {"token": "eyJ.a.b"},
        {"token": "eyJ.a.b", "resume": "r"},
        {"token": "eyJ.a.b", "ice_restart": True},
    ],
    "admit": [{"participant": PID}],
    "deny": [{"participant": PID}],
    "note": [{"text": "Running late"}],
    "notes": [{"allow": True}],
    "offer": [{"round": 1, "sdp": CHROME_SDP}],
    "answer": [{"round": 2, "sdp": CHROME_SDP}],
    "candidate": [{"round": 1, "candidate": CANDIDATE}, {"round": 1, "candidate": None}],
    "restart": [{}, {"round": 3}],
    "media": [{"audio": False, "video": True}],
    "share": [
        {"round": 1, "state": "started", "mid": "2"},
        {"round": 4, "state": "stopped", "mid": "v1"},
    ],
    "mode": [{"mode": "audio"}],
    "leave": [{}],
    "end": [{}],
    "connection": [{"state": "connected"}, {"state": "disconnected"}],
    "stats": [
        {
            "rtt_ms": 41.5,
            "loss": 0.0,
            "jitter_ms": 2,
            "bitrate_in_kbps": 640.0,
            "bitrate_out_kbps": 610.5,
            "width": 640,
            "height": 480,
            "relay": True,
        },
        {
            "rtt_ms": None,
            "loss": None,
            "jitter_ms": None,
            "bitrate_in_kbps": None,
            "bitrate_out_kbps": None,
            "width": None,
            "height": None,
            "relay": False,
        },
    ],
}
SERVER_SAMPLES: dict[str, list[dict[str, Any]]] = {
    "joined": [
        {
            "participant": PID,
            "role": "client",
            "state": "in_call",
            "resume": "x" * 43,
            "mode": "video",
            "peers": [{"participant": PID, "role": "therapist", "state": "in_call"}],
        }
    ],
    "waiting": [{"therapist": "in_another_session", "notes_allowed": False}],
    "waiting-list": [
        {
            "waiting": [
                {
                    "participant": PID,
                    "role": "client",
                    "display_name": "A",
                    "since": "2026-11-03T14:20:00+00:00",
                }
            ]
        }
    ],
    "note": [{"participant": PID, "text": "hi"}],
    "admitted": [{}],
    "denied": [{}],
    "peer-joined": [
        {
            "peer": {"participant": PID, "role": "therapist"},
            "round": 3,
            "offerer": False,
            "ice_restart": True,
        }
    ],
    "offer": [{"round": 1, "sdp": CHROME_SDP, "from": PID}],
    "answer": [{"round": 1, "sdp": CHROME_SDP, "from": PID}],
    "candidate": [{"round": 1, "candidate": CANDIDATE, "from": PID}],
    "peer-media": [{"participant": PID, "audio": True, "video": False}],
    "share": [{"round": 2, "state": "started", "mid": "2", "from": PID}],
    "mode": [{"mode": "audio", "by": PID}],
    "peer-left": [{"participant": PID, "reason": "disconnected"}],
    "ended": [{"reason": "window_closed"}],
    "error": [
        {"code": "stale_round", "detail": "The current round is 2.", "ref": "offer"},
        {"code": "rate_limited", "detail": "Slow down.", "ref": None},
    ],
}


@pytest.mark.parametrize(
    ("action", "samples"), [("receive", CLIENT_SAMPLES), ("send", SERVER_SAMPLES)]
)
def test_samples_validate(action: str, samples: dict[str, list[dict[str, Any]]]) -> None:
    messages = operation_messages(action)
    assert set(samples) == set(messages)
    for name, cases in samples.items():
        schema = payload_schema(messages[name])
        for fields in cases:
            jsonschema.validate({"v": 1, "type": name, **fields}, schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"v": 1, "type": name, **cases[0], "extra": 1}, schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"v": 2, "type": name, **cases[0]}, schema)
