"""Runs of a killed server are resumed from their journal by the next server, or by a live one."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from service.storage.records import TERMINAL
from tests.conftest import LiveServer
from tests.integration.durability import (
    completed_event_nodes,
    completions_by_node,
    create_run,
    durable_env,
    open_store,
    wait_terminal,
)
from tests.integration.durable_workflows import CHAIN
from tests.service.api.test_routes_runs import parse_sse

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


def _pid(server: LiveServer) -> int:
    return server.proc.pid


def test_two_live_servers_on_one_database_never_both_execute_a_run(
    database_url: str, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    counter = tmp_path / "completions.txt"
    servers = [start_server(database_url, **durable_env(counter)) for _ in range(2)]
    # Each run lasts 2.4 s, more than two leases: without renewals the other server would
    # take it over.
    runs = {
        f"r{i}": (
            servers[i % 2],
            create_run(servers[i % 2].url, "steady_chain", {"tag": f"r{i}", "delay": 0.2}),
        )
        for i in range(8)
    }
    with open_store(database_url) as store:
        for tag, (server, run_id) in runs.items():
            run = wait_terminal(store, run_id)
            assert run.status == "succeeded", run.error
            assert run.recovery_attempts == 0
            assert all(e.type != "run_resumed" for e in store.events_after(run_id, 0))
            ran = completions_by_node(counter, tag)
            assert ran == {node: [_pid(server)] for node in CHAIN}, tag


def test_live_server_takes_over_a_killed_servers_runs_after_the_lease_expires(
    database_url: str, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    counter = tmp_path / "completions.txt"
    doomed, survivor = (start_server(database_url, **durable_env(counter)) for _ in range(2))
    tags = [f"k{i}" for i in range(3)]
    run_ids = [create_run(doomed.url, "steady_chain", {"tag": t, "delay": 0.15}) for t in tags]
    with open_store(database_url) as store:
        deadline = time.monotonic() + 15
        while any(len(store.journal(r)) < 2 for r in run_ids):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        doomed.kill()
        killed_at = datetime.now(UTC)
        recorded = {r: {j["node"] for j in store.journal(r)} for r in run_ids}
        for tag, run_id in zip(tags, run_ids, strict=True):
            run = wait_terminal(store, run_id)
            assert run.status == "succeeded", run.error
            assert run.output is not None and run.output["trace"] == CHAIN
            assert sorted(completed_event_nodes(store, run_id)) == CHAIN  # none redone or lost
            resumed = [e for e in store.events_after(run_id, 0) if e.type == "run_resumed"]
            assert len(resumed) == 1 and run.recovery_attempts == 1
            waited = (resumed[0].created_at - killed_at).total_seconds()
            # The lease is 1 s, renewed every 0.2 s: expiry comes 0.8-1 s after the kill.
            assert 0.6 <= waited <= 4.0, waited
            for node, pids in completions_by_node(counter, tag).items():
                if node in recorded[run_id]:
                    assert pids == [_pid(doomed)], (tag, node)
                else:
                    assert pids[-1] == _pid(survivor) and len(pids) <= 2, (tag, node, pids)


def test_poison_run_is_failed_after_the_recovery_limit_while_its_neighbours_succeed(
    database_url: str, tmp_path: Path
) -> None:
    counter = tmp_path / "completions.txt"
    env = durable_env(counter, GRAPHFLOW_MAX_RECOVERY_ATTEMPTS="2")
    servers: list[LiveServer] = []

    def start() -> LiveServer | None:
        try:
            servers.append(LiveServer(database_url, tmp_path / f"s{len(servers)}.log", **env))
        except RuntimeError:  # died (of the poison) before it answered its health check
            return None
        return servers[-1]

    server = start()
    assert server is not None
    # Neighbours last 1.2 s while the poison kills every 0.4 s: they are interrupted too.
    neighbours = {
        f"n{i}": create_run(server.url, "steady_chain", {"tag": f"n{i}", "delay": 0.1})
        for i in range(3)
    }
    poison = create_run(server.url, "poison_pill", {"tag": "poison", "fuse": 0.4})
    deaths = 0
    with open_store(database_url) as store, contextlib.ExitStack() as cleanup:
        cleanup.callback(lambda: [s.stop() for s in servers])
        deadline = time.monotonic() + 90
        while not all(
            store.get_run(r).status in TERMINAL  # type: ignore[union-attr]
            for r in [poison, *neighbours.values()]
        ):
            assert time.monotonic() < deadline, f"still running after {deaths} deaths"
            if server is None or server.proc.poll() is not None:  # the supervisor's job
                deaths += 1
                assert deaths <= 6, "the poison run is never given up"
                server = start()
            time.sleep(0.05)
        run = store.get_run(poison)
        assert run is not None and run.status == "failed"
        assert run.error is not None
        assert run.error["type"] == "RecoveryLimitExceeded"
        assert run.error["node"] == "poison"
        message = run.error["message"]
        assert "'poison'" in message and "3 times" in message, message
        assert "2 recovery attempts (GRAPHFLOW_MAX_RECOVERY_ATTEMPTS=2)" in message, message
        assert deaths == 3  # the first run of the poison node and its two recoveries
        assert "never" not in completions_by_node(counter, "poison")
        for tag, run_id in neighbours.items():
            run = store.get_run(run_id)
            assert run is not None and run.status == "succeeded", (tag, run and run.error)
            assert run.output is not None and run.output["trace"] == CHAIN
            assert sorted(completed_event_nodes(store, run_id)) == CHAIN
            # It shared the poison's process, so it died with it at least once.
            assert any(e.type == "run_resumed" for e in store.events_after(run_id, 0)), tag
