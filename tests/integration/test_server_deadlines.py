"""Deadlines on real servers: a run past ``timeout_seconds`` or ``queue_timeout_seconds`` ends
``timed_out`` naming the deadline; a deadline survives ``kill -9``; the service's cap bounds it."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.integration.durability import (
    completions_by_node,
    create_run,
    durable_env,
    stream_events,
    wait_status,
)
from tests.integration.durable_workflows import CHAIN

pytestmark = pytest.mark.slow

ENDED = ("succeeded", "failed", "cancelled", "timed_out")


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _assert_timed_out(run: dict[str, Any], field: str) -> None:
    assert run["status"] == "timed_out", run
    assert run["error"]["type"] == "DeadlineExceeded"
    assert f"({field})" in run["error"]["message"], run["error"]


def test_a_run_past_its_timeout_ends_timed_out_naming_timeout_seconds(
    database_url: str, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    counter = tmp_path / "completions.txt"
    server = start_server(database_url, cli=True, **durable_env(counter))
    rid = create_run(server.url, "steady_chain", {"tag": "t", "delay": 0.3}, timeout_seconds=0.5)

    run = wait_status(server.url, rid, ENDED)
    _assert_timed_out(run, "timeout_seconds")
    assert run["timeout_seconds"] == 0.5
    started, deadline = _at(run["started_at"]), _at(run["deadline_at"])
    assert (deadline - started).total_seconds() == pytest.approx(0.5)
    # It ended at its deadline once the node in flight finished (as on cancel), not later.
    assert 0.5 <= run["duration_ms"] / 1000 < 1.5, run["duration_ms"]
    ran = completions_by_node(counter, "t")
    assert 1 <= len(ran) < len(CHAIN) and all(len(pids) == 1 for pids in ran.values())
    assert {n["status"] for n in run["nodes"]} == {"succeeded"}
    events = stream_events(server.url, rid)  # the stream ends by itself at the end
    assert events[-1]["event"] == "run_timed_out"
    assert events[-1]["data"]["error"] == run["error"]


def test_a_queued_run_that_finds_no_free_slot_ends_timed_out_naming_queue_timeout_seconds(
    database_url: str, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    counter = tmp_path / "completions.txt"
    env = durable_env(counter, GRAPHFLOW_MAX_CONCURRENT_RUNS="1")
    server = start_server(database_url, cli=True, **env)
    blocker = create_run(server.url, "steady_chain", {"tag": "blocker", "delay": 0.3})
    wait_status(server.url, blocker, ("running",))
    rid = create_run(server.url, "steady_chain", {"tag": "late"}, queue_timeout_seconds=0.5)

    run = wait_status(server.url, rid, ENDED, timeout=5)
    _assert_timed_out(run, "queue_timeout_seconds")
    assert run["started_at"] is None and run["nodes"] == []
    waited = (_at(run["finished_at"]) - _at(run["created_at"])).total_seconds()
    assert 0.5 <= waited < 2.0, waited  # the heartbeat's sweep ended it, though no slot freed
    assert httpx.get(f"{server.url}/runs/{blocker}").json()["status"] == "running"
    assert completions_by_node(counter, "late") == {}
    assert wait_status(server.url, blocker, ENDED, timeout=10)["status"] == "succeeded"


def test_a_deadline_survives_kill_9_and_the_next_server_ends_the_run_on_time(
    database_url: str, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    counter = tmp_path / "completions.txt"
    first = start_server(database_url, cli=True, **durable_env(counter))
    rid = create_run(first.url, "steady_chain", {"tag": "t", "delay": 0.3}, timeout_seconds=3)
    while not completions_by_node(counter, "t"):
        time.sleep(0.02)
    before = httpx.get(f"{first.url}/runs/{rid}").json()
    assert before["status"] == "running" and before["deadline_at"] is not None
    first.kill()

    second = start_server(database_url, cli=True, **durable_env(counter))
    ready = datetime.now(UTC)  # its start-up sweep has run: a run already past it has ended
    run = wait_status(second.url, rid, ENDED, timeout=20)
    _assert_timed_out(run, "timeout_seconds")
    assert run["deadline_at"] == before["deadline_at"]  # stored at the first start, kept
    assert run["started_at"] == before["started_at"]
    # Ended at the first start's deadline (or at once, if the server came up after it; the
    # lease, the heartbeat and the node in flight add a little), not a full timeout after
    # the takeover.
    due = max(_at(run["deadline_at"]), ready)
    late = (_at(run["finished_at"]) - due).total_seconds()
    assert late < 1.0, (late, run["deadline_at"], ready)
    assert len(completions_by_node(counter, "t")) < len(CHAIN)


def test_a_timeout_above_the_service_cap_is_refused_naming_the_cap(
    database_url: str, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    env = durable_env(tmp_path / "completions.txt", GRAPHFLOW_MAX_RUN_SECONDS="10")
    server = start_server(database_url, cli=True, **env)
    url = f"{server.url}/graphs/steady_chain/runs"
    body: dict[str, Any] = {"input": {"tag": "t", "delay": 0}}

    resp = httpx.post(url, json={**body, "timeout_seconds": 10.5})
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert "timeout_seconds=10.5" in detail and "GRAPHFLOW_MAX_RUN_SECONDS" in detail
    assert "at most 10" in detail
    assert httpx.get(f"{server.url}/runs").json()["items"] == []  # nothing was stored

    for bad in (0, -1, "soon"):
        resp = httpx.post(url, json={**body, "timeout_seconds": bad})
        assert resp.status_code == 422, resp.text
    resp = httpx.post(url, json={**body, "queue_timeout_seconds": 0})
    assert resp.status_code == 422, resp.text

    ok = httpx.post(url, json={**body, "timeout_seconds": 10, "queue_timeout_seconds": 60})
    assert ok.status_code == 202, ok.text
    assert ok.json()["timeout_seconds"] == 10 and ok.json()["queue_timeout_seconds"] == 60
    assert wait_status(server.url, ok.json()["id"], ENDED)["status"] == "succeeded"
