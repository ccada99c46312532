"""Two real WebSocket clients on two real uvicorn processes, through Redis (MSG-04).

The client's socket is on one web process, the therapist's on another; what one sends over REST
reaches the other's socket through the Redis channel layer, typing states too; a client that
reconnects (to the other process) with its cursor gets what it missed, in order, once.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import websockets

from tests.messaging.live_support import LiveMessaging, Pair, live_messaging

pytestmark = pytest.mark.redis

TIMEOUT = 10


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveMessaging]:
    with live_messaging(
        tmp_path_factory.mktemp("live"), redis_url=os.environ["REDIS_URL"], pairs=2
    ) as live:
        live.start_server()
        live.start_server()
        yield live


def _send(base_url: str, token: str, conversation: str, body: str) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{base_url}/api/v1/conversations/{conversation}/messages",
        data=json.dumps({"client_message_id": str(uuid.uuid4()), "body": body}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
        assert response.status == 201
        return dict(json.loads(response.read()))


async def _hello(url: str, token: str, resume: dict[str, int] | None = None) -> Any:
    ws = await websockets.connect(url, open_timeout=TIMEOUT)
    await ws.send(json.dumps({"type": "hello", "token": token, "resume": resume or {}}))
    ready = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    assert ready["type"] == "ready", ready
    return ws


async def _next(ws: Any, kind: str) -> dict[str, Any]:
    frame = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    assert frame["type"] == kind, frame
    return dict(frame)


async def _exchange(app: LiveMessaging, pair: Pair) -> None:
    one, two = app.servers
    client_ws = await _hello(one.ws_url, pair.client_token)
    therapist_ws = await _hello(two.ws_url, pair.therapist_token)
    loop = asyncio.get_running_loop()

    sent = await loop.run_in_executor(
        None, _send, one.base_url, pair.client_token, pair.conversation, "Hello from process one"
    )
    for ws in (therapist_ws, client_ws):  # the other participant, and the sender's other tabs
        got = await _next(ws, "message")
        assert (got["message"]["id"], got["message"]["body"]) == (
            sent["id"],
            "Hello from process one",
        )
    reply = await loop.run_in_executor(
        None, _send, two.base_url, pair.therapist_token, pair.conversation, "Reply from two"
    )
    assert (await _next(client_ws, "message"))["message"]["id"] == reply["id"]
    await _next(therapist_ws, "message")

    await therapist_ws.send(
        json.dumps({"type": "typing", "conversation": pair.conversation, "typing": True})
    )
    typing = await _next(client_ws, "typing")
    assert (typing["by"], typing["typing"]) == ("therapist", True)

    # The client goes offline; two messages are sent meanwhile; it comes back on the other
    # process with its cursor (seq 2) and gets exactly those two, in order.
    await client_ws.close()
    missed = [
        await loop.run_in_executor(
            None, _send, two.base_url, pair.therapist_token, pair.conversation, f"missed {i}"
        )
        for i in (1, 2)
    ]
    client_ws = await _hello(two.ws_url, pair.client_token, {pair.conversation: 2})
    caught_up = [(await _next(client_ws, "message"))["message"] for _ in missed]
    assert [(m["seq"], m["body"]) for m in caught_up] == [(3, "missed 1"), (4, "missed 2")]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client_ws.recv(), 0.5)  # nothing twice
    await client_ws.close()
    await therapist_ws.close()


def test_msg_04_two_sockets_on_two_processes_exchange_messages_through_redis(
    app: LiveMessaging,
) -> None:
    asyncio.run(_exchange(app, app.pairs[0]))
