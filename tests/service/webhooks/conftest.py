"""Fixtures of the webhook tests: a real receiver, and runs that ended with a delivery due."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from service.storage import queries as q
from service.storage.outbox import WebhookOutbox, enqueue_deliveries
from service.storage.records import DeliveryStatus, RunStatus
from service.storage.sql import SqlRunStore
from service.storage.tables import new_run_values, utcnow
from service.webhooks import SIGNATURE_HEADER, SignatureError, verify

SECRET = "whsec-test-secret"
# Settings that make deliveries fast in tests: retries within milliseconds.
FAST: dict[str, Any] = {
    "webhook_secret": SECRET,
    "webhook_allow_hosts": ["127.0.0.1"],
    "webhook_backoff_seconds": 0.01,
    "webhook_max_backoff_seconds": 0.05,
    "webhook_timeout_seconds": 2.0,
    "webhook_max_attempts": 3,
    "poll_seconds": 0.05,
}
OUTPUT = {"answer": 42, "words": ["a", "b"]}


class Receiver:
    """A webhook receiver on a loopback port. It answers each POST with the next of
    ``statuses`` (the last repeats), keeps what it got, and verifies each signature."""

    def __init__(self, statuses: tuple[int, ...]) -> None:
        self.statuses = list(statuses)
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.bodies: list[bytes] = []  # as sent, for signature checks of the tests' own
        self.bad_signatures: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    verify(SECRET, self.headers[SIGNATURE_HEADER], body)
                except SignatureError as exc:
                    receiver.bad_signatures.append(str(exc))
                receiver.requests.append((dict(self.headers), json.loads(body)))
                receiver.bodies.append(body)
                status = (
                    receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                )
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", f"{receiver.url}/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    """Factory of receivers answering ``*statuses``; all are closed at teardown, and must have
    seen only valid signatures."""
    started: list[Receiver] = []

    def start(*statuses: int) -> Receiver:
        started.append(Receiver(statuses or (200,)))
        return started[-1]

    yield start
    for r in started:
        r.close()
    assert [bad for r in started for bad in r.bad_signatures] == []


def ended_run(store: SqlRunStore, webhook_url: str | None) -> str:
    """A succeeded run with its terminal event (seq 2) and, if it has a URL, its delivery."""
    run_id = str(uuid.uuid4())
    now = utcnow()
    values = new_run_values(
        run_id=run_id,
        graph="adder",
        input={"x": 1},
        max_concurrent=None,
        idempotency_key=None,
        owner_id=None,
        lease_seconds=30,
        webhook_url=webhook_url,
    )
    values.update(
        status=RunStatus.SUCCEEDED,
        output=OUTPUT,
        started_at=now - timedelta(seconds=1),
        finished_at=now,
        last_seq=2,
    )
    data = {
        "status": "succeeded",
        "finished_at": now.isoformat(),
        "duration_ms": 1000.0,
        "output": OUTPUT,
    }
    with store.transaction() as conn:
        conn.execute(q.INSERT_RUN, values)
        event = {"run_id": run_id, "seq": 2, "type": "run_succeeded", "data": data}
        conn.execute(q.INSERT_EVENT, {**event, "created_at": now})
        enqueue_deliveries(conn, [(run_id, "run_succeeded", 2)], now)
    return run_id


def settled(store: SqlRunStore, run_id: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The run's deliveries once none is pending (or the timeout passed)."""
    outbox = WebhookOutbox(store)
    deadline = time.monotonic() + timeout
    while True:
        rows = outbox.deliveries_for(run_id)
        done = all(row["status"] != DeliveryStatus.PENDING for row in rows)
        if done or time.monotonic() > deadline:
            return rows
        time.sleep(0.02)
