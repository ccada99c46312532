"""Stripe stand-ins for the billing tests, all on loopback.

* ``LocalStripe``: the ``localstripe`` program (GPL) run as a separate process, never imported.
* ``ScriptedStripe``: a tiny HTTP server that answers with what a test scripts (503s, 429s, an
  idempotency error, silence past the client's timeout) and records what it was sent. It covers
  what localstripe cannot: it ignores idempotency keys and never fails on purpose.
* ``signed``: a webhook body signed with Stripe's scheme, ``t=<ts>,v1=HMAC-SHA256(secret,
  "<ts>.<body>")``, written out here rather than taken from the SDK so the verifier is checked
  against an independent signer.
* Event builders in Stripe's CURRENT shapes. They exist because localstripe sends no refund or
  dispute webhooks, uses an old API version (``charges`` lists, no ``amount_received``), and has
  no Connect; the app must handle Stripe as it is today.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.live import free_port

API_VERSION = "2026-10-28.endive"
LOCALSTRIPE_KEY = "sk_test_localstripe"
PUBLISHABLE_KEY = "pk_test_billing_suite"
WEBHOOK_SECRET = "whsec_test_billing_suite"


def wait_until(predicate: Any, *, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        pause.wait(interval)


# localstripe runs on this process's clock, which tests/clock.py may have moved: its objects and
# webhook signatures are dated at the instant the app sees as now (else a signature made at the
# real time is outside the webhook tolerance of an app running in 2028).
_ON_THIS_CLOCK = (
    "import runpy, sys, time_machine; "
    "time_machine.travel(float(sys.argv.pop(1)), tick=True).start(); "
    "sys.argv[0] = 'localstripe'; "
    "runpy.run_module('localstripe', run_name='__main__', alter_sys=True)"
)


class LocalStripe:
    """``python -m localstripe`` on a free port, started fresh and stopped after, on this
    process's clock."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = (workdir / "localstripe.log").open("wb")
        self._process = subprocess.Popen(
            [sys.executable, "-c", _ON_THIS_CLOCK, repr(time.time()), "--port", str(self.port)]
            + ["--from-scratch"],
            cwd=workdir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            wait_until(self._answers, timeout=15)
        except AssertionError:
            self.stop()
            raise

    def _answers(self) -> bool:
        if self._process.poll() is not None:
            raise RuntimeError("localstripe exited early; see localstripe.log")
        request = urllib.request.Request(  # noqa: S310 - loopback http only
            f"{self.url}/v1/customers", headers={"Authorization": f"Bearer {LOCALSTRIPE_KEY}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=1) as response:  # noqa: S310
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def register_webhook(self, url: str, secret: str = WEBHOOK_SECRET) -> None:
        """localstripe's ``/_config/webhooks/<id>``: deliver signed events to ``url``."""
        body = f"url={urllib.request.quote(url, safe='')}&secret={secret}".encode()
        request = urllib.request.Request(  # noqa: S310 - loopback http only
            f"{self.url}/_config/webhooks/app", data=body, method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            assert response.status == 200

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        self._log.close()


# --- scripted server ---------------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: dict[str, Any] = field(default_factory=dict)
    hang: bool = False  # answer nothing until the test ends (the client times out first)


@dataclass
class Received:
    method: str
    path: str
    idempotency_key: str | None
    body: str
    stripe_version: str | None = None


class ScriptedStripe:
    """Answers each request with the next scripted ``Reply`` (the last one repeats)."""

    def __init__(self, replies: list[Reply]):
        self.replies = list(replies)
        self.received: list[Received] = []
        self.release = threading.Event()
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self._answer()

            def do_GET(self) -> None:
                self._answer()

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                double.received.append(
                    Received(
                        method=self.command,
                        path=self.path,
                        idempotency_key=self.headers.get("Idempotency-Key"),
                        body=body,
                        stripe_version=self.headers.get("Stripe-Version"),
                    )
                )
                reply = double.replies.pop(0) if len(double.replies) > 1 else double.replies[0]
                if reply.hang:
                    double.release.wait(timeout=30)
                    return
                data = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def scripted_stripe(replies: list[Reply]) -> Iterator[ScriptedStripe]:
    double = ScriptedStripe(replies)
    try:
        yield double
    finally:
        double.stop()


def stripe_error(kind: str, code: str, message: str = "error") -> dict[str, Any]:
    return {"error": {"type": kind, "code": code, "message": message}}


# --- objects and events in Stripe's current shapes ------------------------------------------


def payment_intent_object(
    *,
    intent_id: str,
    status: str,
    amount: int = 12000,
    currency: str = "usd",
    amount_received: int = 0,
    metadata: dict[str, str] | None = None,
    latest_charge: str | None = None,
    livemode: bool = False,
) -> dict[str, Any]:
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_received": amount_received,
        "capture_method": "automatic_async",
        "client_secret": f"{intent_id}_secret_test",
        "currency": currency,
        "customer": "cus_test",
        "last_payment_error": None,
        "latest_charge": latest_charge,
        "livemode": livemode,
        "metadata": metadata or {},
        "payment_method_types": ["card"],
        "status": status,
    }


def charge_object(
    *,
    charge_id: str,
    intent_id: str,
    amount: int = 12000,
    amount_refunded: int = 0,
    currency: str = "usd",
) -> dict[str, Any]:
    return {
        "id": charge_id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": amount_refunded,
        "captured": True,
        "currency": currency,
        "paid": True,
        "payment_intent": intent_id,
        "refunded": amount_refunded >= amount,
        "status": "succeeded",
        "metadata": {},
    }


def setup_intent_object(
    *, setup_intent_id: str, status: str, customer: str, payment_method: str | None = None
) -> dict[str, Any]:
    """A SetupIntent as Stripe sends it in ``setup_intent.*`` events (localstripe sends none)."""
    return {
        "id": setup_intent_id,
        "object": "setup_intent",
        "client_secret": f"{setup_intent_id}_secret_test",
        "customer": customer,
        "last_setup_error": None,
        "livemode": False,
        "metadata": {},
        "payment_method": payment_method,
        "payment_method_types": ["card"],
        "status": status,
        "usage": "off_session",
    }


def payment_method_object(
    *, payment_method_id: str, customer: str | None = None, metadata: dict[str, str] | None = None
) -> dict[str, Any]:
    """A card PaymentMethod as Stripe sends it; in ``payment_method.detached`` its customer is
    already null (localstripe sends no payment method events)."""
    return {
        "id": payment_method_id,
        "object": "payment_method",
        "billing_details": {"address": None, "email": None, "name": None, "phone": None},
        "card": {"brand": "visa", "exp_month": 4, "exp_year": 2031, "last4": "4242"},
        "customer": customer,
        "livemode": False,
        "metadata": metadata or {},
        "type": "card",
    }


def dispute_object(*, dispute_id: str, charge_id: str, intent_id: str) -> dict[str, Any]:
    return {
        "id": dispute_id,
        "object": "dispute",
        "amount": 12000,
        "charge": charge_id,
        "currency": "usd",
        "payment_intent": intent_id,
        "reason": "general",
        "status": "needs_response",
    }


def event(
    event_type: str,
    obj: dict[str, Any],
    *,
    event_id: str,
    created: int | None = None,
    livemode: bool = False,
) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "api_version": API_VERSION,
        "created": created if created is not None else int(time.time()),
        "data": {"object": obj},
        "livemode": livemode,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def signature(payload: bytes, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    ts = timestamp if timestamp is not None else int(time.time())
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def signed(body: dict[str, Any], **kwargs: Any) -> tuple[bytes, str]:
    payload = json.dumps(body, indent=2).encode()
    return payload, signature(payload, **kwargs)
