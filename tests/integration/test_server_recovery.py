"""A run interrupted by a killed server is resumed by the next one from its journal."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import LiveServer
from tests.service.test_routes_runs import parse_sse

pytestmark = pytest.mark.slow

LEASE = {"GRAPHFLOW_LEASE_SECONDS": "1", "GRAPHFLOW_HEARTBEAT_SECONDS": "0.25"}


def test_killed_server_run_is_resumed_without_redoing_completed_nodes(
    database_url: str, start_server: Callable[..., LiveServer]
) -> None:
    first = start_server(database_url, cli=True, **LEASE)
    run = httpx.post(f"{first.url}/graphs/slow_chain/runs", json={"input": {"delay": 0.3}}).json()
    deadline = time.monotonic() + 15
    while True:
        nodes = httpx.get(f"{first.url}/runs/{run['id']}").json()["nodes"]
        if sum(n["status"] == "succeeded" for n in nodes) >= 2:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first.kill()  # SIGKILL: no graceful shutdown, the lease simply stops being renewed

    second = start_server(database_url, cli=True, **LEASE)
    deadline = time.monotonic() + 30
    while True:
        done = httpx.get(f"{second.url}/runs/{run['id']}").json()
        if done["status"] not in ("queued", "running"):
            break
        assert time.monotonic() < deadline, done
        time.sleep(0.1)
    assert done["status"] == "succeeded", done
    assert done["output"]["trace"] == [f"s{i}" for i in range(8)]
    text = httpx.get(f"{second.url}/runs/{run['id']}/events", timeout=10).text
    events = parse_sse(text)
    assert [int(e["id"]) for e in events] == list(range(1, len(events) + 1))
    completed = [e["data"]["node"] for e in events if e["event"] == "node_completed"]
    assert completed == [f"s{i}" for i in range(8)]  # none redone, none lost
    assert events[-1]["event"] == "run_succeeded"
