"""Helpers of the kill/restart tests: server environments, the completion counter, DB polling."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from service.storage.records import TERMINAL
from service.storage.sql import SqlRunStore
from service.storage.tables import Run
from tests.integration.durable_workflows import COUNTER_ENV
from tests.service.api.test_routes_runs import parse_sse

DURABLE_WORKFLOWS = "tests.integration.durable_workflows"


def durable_env(counter: Path, *, lease: float = 1.0, **extra: str) -> dict[str, str]:
    """Server environment: our graphs, the counter file, a short lease renewed 5x per lease."""
    return {
        "GRAPHFLOW_WORKFLOWS": DURABLE_WORKFLOWS,
        COUNTER_ENV: str(counter),
        "GRAPHFLOW_LEASE_SECONDS": str(lease),
        "GRAPHFLOW_HEARTBEAT_SECONDS": str(lease / 5),
        "GRAPHFLOW_DB_POOL_SIZE": "4",
        **extra,
    }


@dataclass(frozen=True)
class Completion:
    tag: str
    node: str
    pid: int


def read_completions(counter: Path) -> list[Completion]:
    """Every line the nodes appended to the counter file, in file order."""
    if not counter.exists():
        return []
    lines = counter.read_text().splitlines()
    return [Completion(tag, node, int(pid)) for tag, node, pid in (ln.split() for ln in lines)]


def completions_by_node(counter: Path, tag: str) -> dict[str, list[int]]:
    """node -> pids of the processes that completed it, for the run tagged ``tag``."""
    found: dict[str, list[int]] = collections.defaultdict(list)
    for c in read_completions(counter):
        if c.tag == tag:
            found[c.node].append(c.pid)
    return dict(found)


@contextmanager
def open_store(database_url: str) -> Iterator[SqlRunStore]:
    """A store of the test process on the servers' database (the schema already exists)."""
    store = SqlRunStore(database_url, pool_size=2)
    try:
        yield store
    finally:
        store.close()


def wait_terminal(store: SqlRunStore, run_id: str, timeout: float = 30.0) -> Run:
    """Poll the database until the run ended; fail with its last state after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        run = store.get_run(run_id)
        assert run is not None, run_id
        if run.status in TERMINAL:
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run.status} after {timeout} s"
        time.sleep(0.05)


def create_run(url: str, graph: str, input: dict[str, Any], **body: Any) -> str:
    """POST a run and return its id (asserting it was accepted)."""
    resp = httpx.post(f"{url}/graphs/{graph}/runs", json={"input": input, **body}, timeout=10)
    assert resp.status_code == 202, resp.text
    run_id: str = resp.json()["id"]
    return run_id


def completed_event_nodes(store: SqlRunStore, run_id: str) -> list[str]:
    """Nodes of the run's ``node_completed`` events, in event order."""
    events = store.events_after(run_id, 0, 10_000)
    return [e.data["node"] for e in events if e.type == "node_completed"]


def wait_status(url: str, run_id: str, statuses: tuple[str, ...], timeout: float = 15.0) -> Any:
    """``GET /runs/{id}`` once the run's status is one of ``statuses``."""
    deadline = time.monotonic() + timeout
    while True:
        run = httpx.get(f"{url}/runs/{run_id}", timeout=5).json()
        if run["status"] in statuses:
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run['status']}"
        time.sleep(0.03)


def stream_events(url: str, run_id: str, after: int = 0) -> list[dict[str, Any]]:
    """The run's stream from ``after`` (sent as ``Last-Event-ID``) until the server ends it."""
    headers = {"Last-Event-ID": str(after)} if after else {}
    resp = httpx.get(f"{url}/runs/{run_id}/events", headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    return parse_sse(resp.text)
