"""Messaging benchmark (issue 17, Performance): how fast a sent message reaches the other
participant's socket across two web processes, beside a bare relay through the same channel
layer, and how fast a page of history is served with many rows in the table.

The app runs as the messaging tests run it (``tests/messaging/live_support.py``), but with DEBUG
off as in production (``bench/bench_settings.py``): two uvicorn processes on 127.0.0.1 sharing a
fresh migrated database (PostgreSQL ``bench_messaging_live`` from
``BENCH_MESSAGING_DATABASE_URL``, default ``postgres://postgres@127.0.0.1:5432/h_msg``;
``sqlite`` there uses an SQLite file) with psycopg's pool (``DATABASE_POOL=1``) and Redis
(``REDIS_URL``, default ``redis://127.0.0.1:6379/3``) as the channel layer between them. It is
seeded with ``--pairs`` conversations (200), each holding ``--messages`` messages (500: 100,000
rows in all), encrypted as the services encrypt them.

1. **Delivery**: every client's socket is open on process one and every therapist's on process
   two (``--pairs`` online conversations, 2 x pairs sockets). One sample at a time,
   ``--gap-ms`` apart, a random pair: ``message`` is from just before the client's REST send
   (``POST .../messages``, a kept-alive HTTP connection to process one) to the moment the
   therapist's socket on process two has the message (written, audited, published through
   Redis, read back, decrypted, audited, pushed); ``echo`` is from just before the client's
   socket sends a ``typing`` frame to the moment the therapist's socket has it: the bare relay
   socket → channel layer (Redis) → socket, no database. Kinds alternate; ``message_vs_echo``
   is the ratio of the p50s. Goal: message p95 < 150 ms.
2. **History**: ``GET /api/v1/conversations/{id}/messages`` (50 messages, decrypted, the read
   audited), ``--history`` requests on random conversations over one kept-alive connection.
   Goal: p95 < 50 ms.

The load generator shares the machine's cores with the servers, PostgreSQL and Redis; the
machine's other load is not controlled: compare ratios and run more than once. Prints one JSON
line.

    python bench/bench_messaging.py [--pairs 200] [--messages 500] [--samples 400]
                                    [--gap-ms 10] [--history 300]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/h_msg"
DEFAULT_REDIS = "redis://127.0.0.1:6379/3"
TIMEOUT_S = 30.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(statistics.median(values) * 1000, 2),
        "p95_ms": round(percentile(values, 0.95) * 1000, 2),
        "max_ms": round(max(values) * 1000, 2),
    }


class Http:
    """One kept-alive HTTP/1.1 connection (used from one thread)."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT_S)

    def call(self, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        self.connection.request(method, path, body=data, headers=headers)
        response = self.connection.getresponse()
        return response.status, json.loads(response.read() or b"null")


class Socket:
    """A messaging socket whose frames resolve the waits registered on it."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.waits: dict[tuple[str, ...], asyncio.Future[float]] = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for text in self.ws:
            arrived = time.perf_counter()
            frame = json.loads(text)
            key: tuple[str, ...] = (frame["type"], frame.get("conversation", ""))
            if frame["type"] == "message":  # by the sender's id: known before the send
                key = (*key, frame["message"]["client_message_id"])
            waiter = self.waits.pop(key, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(arrived)

    def expect(self, *key: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waits[key] = future
        return future


async def open_socket(url: str, token: str) -> Socket:
    import websockets

    ws = await websockets.connect(url, open_timeout=TIMEOUT_S, max_queue=None)
    await ws.send(json.dumps({"type": "hello", "token": token}))
    ready = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
    assert ready["type"] == "ready", ready
    return Socket(ws)


async def delivery(app: Any, samples: int, gap_s: float) -> dict[str, Any]:
    one, two = app.servers
    pairs = app.pairs
    clients = [await open_socket(one.ws_url, p.client_token) for p in pairs]
    therapists = [await open_socket(two.ws_url, p.therapist_token) for p in pairs]
    sender = ThreadPoolExecutor(max_workers=1)
    http_one = Http(one.base_url)
    loop = asyncio.get_running_loop()
    timings: dict[str, list[float]] = {"message": [], "echo": []}
    rng = random.Random(17)
    for i in range(samples + 20):  # the first 20 warm up
        n = rng.randrange(len(pairs))
        pair, client, therapist = pairs[n], clients[n], therapists[n]
        if i % 2 == 0:
            message_id = str(uuid.uuid4())
            body = {"client_message_id": message_id, "body": f"bench {i}"}
            waiter = therapist.expect("message", pair.conversation, message_id)
            started = time.perf_counter()
            status, sent = await loop.run_in_executor(
                sender,
                http_one.call,
                "POST",
                f"/api/v1/conversations/{pair.conversation}/messages",
                pair.client_token,
                body,
            )
            assert status == 201, sent
            arrived = await asyncio.wait_for(waiter, TIMEOUT_S)
            kind = "message"
        else:
            waiter = therapist.expect("typing", pair.conversation)
            started = time.perf_counter()
            await client.ws.send(
                json.dumps({"type": "typing", "conversation": pair.conversation, "typing": True})
            )
            arrived = await asyncio.wait_for(waiter, TIMEOUT_S)
            kind = "echo"
        if i >= 20:
            timings[kind].append(arrived - started)
        await asyncio.sleep(gap_s)
    for sock in clients + therapists:
        sock.reader.cancel()
        await sock.ws.close()
    message, echo = summary(timings["message"]), summary(timings["echo"])
    return {
        "online_conversations": len(pairs),
        "sockets": 2 * len(pairs),
        "message": message,
        "echo": echo,
        "message_vs_echo_p50": round(message["p50_ms"] / max(echo["p50_ms"], 0.001), 2),
        "message_vs_echo_p95": round(message["p95_ms"] / max(echo["p95_ms"], 0.001), 2),
    }


def history(app: Any, requests: int) -> dict[str, Any]:
    web = app.servers[0]
    client = Http(web.base_url)
    rng = random.Random(50)
    timings = []
    for i in range(requests + 10):
        pair = app.pairs[rng.randrange(len(app.pairs))]
        started = time.perf_counter()
        status, page = client.call(
            "GET",
            f"/api/v1/conversations/{pair.conversation}/messages?page_size=50",
            pair.client_token,
        )
        elapsed = time.perf_counter() - started
        assert status == 200 and len(page["results"]) == 50, (status, page)
        if i >= 10:
            timings.append(elapsed)
    return summary(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--messages", type=int, default=500, help="per conversation")
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--gap-ms", type=float, default=10)
    parser.add_argument("--history", type=int, default=300)
    args = parser.parse_args()

    database = os.environ.get("BENCH_MESSAGING_DATABASE_URL", DEFAULT_DATABASE)
    os.environ["DATABASE_URL"] = "" if database == "sqlite" else database
    os.environ["TEST_DATABASE_NAME"] = "bench_messaging"
    os.environ.setdefault("DATABASE_POOL", "1")
    redis_url = os.environ.get("REDIS_URL", DEFAULT_REDIS)

    from tests.messaging.live_support import live_messaging

    seed_started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory() as workdir,
        live_messaging(
            Path(workdir), redis_url=redis_url, pairs=args.pairs, messages=args.messages
        ) as app,
    ):
        seeded_s = time.perf_counter() - seed_started
        served = {  # DEBUG off, as in production (bench/bench_settings.py)
            "DJANGO_SETTINGS_MODULE": "bench_settings",
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'bench'}",
        }
        app.start_server(**served)
        app.start_server(**served)
        result: dict[str, Any] = {
            "bench": "messaging",
            "database": "sqlite" if database == "sqlite" else "postgresql",
            "rows": args.pairs * args.messages,
            "seed_s": round(seeded_s, 1),
            "delivery": asyncio.run(delivery(app, args.samples, args.gap_ms / 1000)),
            "history_page_50": history(app, args.history),
        }
    result["goals"] = {
        "delivery_p95_under_150ms": result["delivery"]["message"]["p95_ms"] < 150,
        "history_p95_under_50ms": result["history_page_50"]["p95_ms"] < 50,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
