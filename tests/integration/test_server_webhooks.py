"""Webhooks through a real server: signed deliveries, retries with backoff, a restart in the
middle of them, and the refusal of private addresses."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.service.webhooks.conftest import SECRET, receiver  # noqa: F401 - a fixture

pytestmark = pytest.mark.slow

WEBHOOKS = {
    "GRAPHFLOW_WEBHOOK_SECRET": SECRET,
    "GRAPHFLOW_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
    "GRAPHFLOW_WEBHOOK_BACKOFF_SECONDS": "0.2",
    "GRAPHFLOW_WEBHOOK_MAX_BACKOFF_SECONDS": "0.5",
    "GRAPHFLOW_WEBHOOK_TIMEOUT_SECONDS": "2",
    "GRAPHFLOW_POLL_SECONDS": "0.2",
}


def readme_verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """The verification the README shows receivers, verbatim in substance."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    fresh = abs(time.time() - int(parts["t"])) <= tolerance
    return fresh and hmac.compare_digest(expected.hexdigest(), parts["v1"])


def _create(server: LiveServer, graph: str, run_input: dict[str, Any], webhook: str) -> Any:
    resp = httpx.post(
        f"{server.url}/graphs/{graph}/runs?wait=true",
        json={"input": run_input, "webhook": webhook},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def _deliveries(server: LiveServer, run_id: str, count: int, status: str) -> list[Any]:
    """The run's deliveries once ``count`` of them are ``status`` (polling, bounded)."""
    deadline = time.monotonic() + 20
    while True:
        webhook = httpx.get(f"{server.url}/runs/{run_id}").json()["webhook"]
        done = [d for d in webhook["deliveries"] if d["status"] == status]
        if len(done) >= count:
            return list(webhook["deliveries"])
        assert time.monotonic() < deadline, webhook
        time.sleep(0.05)


def test_a_signed_delivery_is_retried_after_two_500s_and_shown_on_the_run(
    database_url: str,
    start_server: Callable[..., LiveServer],
    receiver: Any,  # noqa: F811
) -> None:
    hook = receiver(500, 500, 200)
    server = start_server(database_url, **WEBHOOKS)
    run = _create(server, "basic_fanout", {"work_items": ["a", "b"]}, f"{hook.url}/hook")
    assert run["status"] == "succeeded"

    (delivery,) = _deliveries(server, run["id"], 1, "delivered")
    assert delivery["attempts"] == 3 and delivery["last_status_code"] == 200
    assert delivery["event"] == "run_succeeded" and delivery["delivered_at"] is not None
    assert len(hook.requests) == 3
    assert hook.bad_signatures == []
    ids = {headers["GraphFlow-Delivery"] for headers, _ in hook.requests}
    assert ids == {str(delivery["id"])}  # the same delivery each time: receivers dedupe on it
    headers, body = hook.requests[-1]
    assert body["event"] == "run_succeeded"
    assert body["run"]["id"] == run["id"] and body["run"]["output"] == run["output"]
    assert body["run"]["status"] == "succeeded" and body["run"]["graph"] == "basic_fanout"
    # The check the README shows receivers accepts what was sent, and nothing else.
    signature, raw = headers["GraphFlow-Signature"], hook.bodies[-1]
    assert readme_verify(SECRET, signature, raw)
    assert not readme_verify(SECRET, signature, raw.replace(b"succeeded", b"failed"))
    assert not readme_verify("another-secret", signature, raw)


def test_an_interrupted_run_posts_its_pause_then_its_end(
    database_url: str,
    start_server: Callable[..., LiveServer],
    receiver: Any,  # noqa: F811
) -> None:
    hook = receiver(200)
    server = start_server(database_url, **WEBHOOKS)
    run = _create(server, "approval", {"topic": "hooks"}, f"{hook.url}/approval")
    assert run["status"] == "interrupted"
    _deliveries(server, run["id"], 1, "delivered")
    paused = hook.requests[0][1]
    assert paused["event"] == "run_interrupted"
    assert paused["run"]["status"] == "interrupted"
    assert paused["run"]["interrupts"] == run["interrupts"]

    resp = httpx.post(f"{server.url}/runs/{run['id']}/resume", json={"value": True})
    assert resp.status_code == 202, resp.text
    deliveries = _deliveries(server, run["id"], 2, "delivered")
    assert [d["event"] for d in deliveries] == ["run_interrupted", "run_succeeded"]
    assert hook.requests[1][1]["run"]["output"]["outcome"] == "published"


def test_pending_deliveries_survive_a_kill_and_are_sent_by_the_next_server(
    database_url: str,
    start_server: Callable[..., LiveServer],
    receiver: Any,  # noqa: F811
) -> None:
    hook = receiver(503, 200)
    slow = {**WEBHOOKS, "GRAPHFLOW_WEBHOOK_BACKOFF_SECONDS": "2"}
    first = start_server(database_url, **slow)
    run = _create(first, "basic_fanout", {"work_items": ["a"]}, f"{hook.url}/hook")
    (pending,) = _deliveries(first, run["id"], 1, "pending")
    deadline = time.monotonic() + 10
    while not hook.requests:  # the first attempt got its 503; the next waits ~1-2 s
        assert time.monotonic() < deadline
        time.sleep(0.02)
    first.kill()

    second = start_server(database_url, **slow)
    (delivery,) = _deliveries(second, run["id"], 1, "delivered")
    assert delivery["id"] == pending["id"]
    assert delivery["attempts"] == 2 and delivery["last_status_code"] == 200
    assert len(hook.requests) == 2


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.7/hook",
        "http://localhost/hook",
        "ftp://example.com/hook",
        "http://user:pw@example.com/hook",
    ],
)
def test_private_addresses_and_bad_urls_are_refused_at_creation(
    sqlite_url: str, start_server: Callable[..., LiveServer], url: str
) -> None:
    secret_only = {"GRAPHFLOW_WEBHOOK_SECRET": SECRET}
    server = start_server(sqlite_url, **secret_only)
    resp = httpx.post(
        f"{server.url}/graphs/basic_fanout/runs",
        json={"input": {"work_items": ["a"]}, "webhook": url},
    )
    assert resp.status_code == 422, resp.text
    assert "webhook" in resp.text
    assert httpx.get(f"{server.url}/runs").json()["items"] == []  # nothing was created


def test_without_a_secret_the_server_refuses_webhooks_and_says_which_setting(
    database_url: str, start_server: Callable[..., LiveServer]
) -> None:
    server = start_server(database_url)
    resp = httpx.post(
        f"{server.url}/graphs/basic_fanout/runs",
        json={"input": {"work_items": ["a"]}, "webhook": "https://example.com/hook"},
    )
    assert resp.status_code == 422
    assert "GRAPHFLOW_WEBHOOK_SECRET" in resp.json()["detail"]
