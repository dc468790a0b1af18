"""SIGTERM drains the server: no new runs (503), nodes in flight finish, streams end, it exits.

What did not finish is resumed by the next server from the journal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

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

pytestmark = pytest.mark.slow


class _Stream:
    """Reads a run's event stream in a thread until the server closes it."""

    def __init__(self, url: str) -> None:
        self.events: list[str] = []
        self.closed_cleanly = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, args=(url,), daemon=True)
        self._thread.start()

    def _read(self, url: str) -> None:
        try:
            with httpx.stream("GET", url, timeout=httpx.Timeout(5, read=30)) as resp:
                for line in resp.iter_lines():
                    if line.startswith("event:"):
                        self.events.append(line.split(":", 1)[1].strip())
            self.closed_cleanly = True
        except BaseException as exc:
            self.error = exc

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()


def _wait_started(database_url: str, run_id: str, node: str) -> None:
    with open_store(database_url) as store:
        deadline = time.monotonic() + 15
        while not any(r.node == node for r in store.node_runs(run_id)):
            assert time.monotonic() < deadline, f"{node} never started"
            time.sleep(0.02)


def test_sigterm_refuses_new_runs_finishes_the_node_in_flight_ends_streams_and_exits(
    database_url: str, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    counter = tmp_path / "completions.txt"
    env = durable_env(counter, GRAPHFLOW_SHUTDOWN_GRACE_SECONDS="10")
    server = start_server(database_url, **env)
    run_id = create_run(
        server.url, "steady_chain", {"tag": "t", "delay": 0.05, "slow": {"c01": 1.5}}
    )
    stream = _Stream(f"{server.url}/runs/{run_id}/events")
    _wait_started(database_url, run_id, "c01")

    sigterm_at = time.monotonic()
    server.proc.terminate()
    time.sleep(0.2)  # the handler runs between two bytecodes of the server's main thread
    refused = httpx.post(f"{server.url}/graphs/steady_chain/runs", json={"input": {"tag": "x"}})
    assert refused.status_code == 503, refused.text
    assert "shutting down" in refused.json()["detail"]
    assert httpx.get(f"{server.url}/readyz").status_code == 503
    assert httpx.get(f"{server.url}/runs/{run_id}").json()["status"] == "running"  # still serving

    assert stream.join(10), "the event stream hangs after SIGTERM"
    assert stream.closed_cleanly, stream.error
    server.proc.wait(10)
    exited_after = time.monotonic() - sigterm_at
    # c01 had up to 1.5 s left; the grace (10 s) is an upper bound, not a wait.
    assert exited_after < 5, exited_after
    # The node in flight finished and was announced; nothing new started.
    assert stream.events[-2:] == ["node_started", "node_completed"], stream.events
    with open_store(database_url) as store:
        assert completed_event_nodes(store, run_id) == ["c00", "c01"]
        run = store.get_run(run_id)
        assert run is not None and run.status == "running"
        assert [r.node for r in store.node_runs(run_id)] == ["c00", "c01"]

        restarted = start_server(database_url, **env)
        run = wait_terminal(store, run_id, timeout=20)
        assert run.status == "succeeded", run.error
        assert run.output is not None and run.output["trace"] == CHAIN
        ran = completions_by_node(counter, "t")
        assert ran["c00"] == ran["c01"] == [server.proc.pid]  # not run again
        assert ran["c02"] == [restarted.proc.pid]
        assert completed_event_nodes(store, run_id) == CHAIN
        resumed = [e.data for e in store.events_after(run_id, 0) if e.type == "run_resumed"]
        assert resumed == [
            {"recovery_attempt": 1, "interrupted": [], "resumed_at": resumed[0]["resumed_at"]}
        ]


def test_node_still_running_when_the_grace_period_ends_runs_again_at_next_start(
    database_url: str, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    counter = tmp_path / "completions.txt"
    env = durable_env(counter, GRAPHFLOW_SHUTDOWN_GRACE_SECONDS="0.5")
    server = start_server(database_url, **env)
    run_id = create_run(
        server.url, "steady_chain", {"tag": "t", "delay": 0.02, "slow": {"c01": 3.0}}
    )
    _wait_started(database_url, run_id, "c01")
    sigterm_at = time.monotonic()
    server.proc.terminate()
    server.proc.wait(10)
    exited_after = time.monotonic() - sigterm_at
    assert exited_after < 3.0, exited_after  # it waited for the grace period, not the node
    with open_store(database_url) as store:
        assert completed_event_nodes(store, run_id) == ["c00"]
        restarted = start_server(database_url, **env)
        run = wait_terminal(store, run_id, timeout=20)
        assert run.status == "succeeded", run.error
        assert run.output is not None and run.output["trace"] == CHAIN
    ran = completions_by_node(counter, "t")
    assert ran["c00"] == [server.proc.pid]
    assert ran["c01"] == [restarted.proc.pid]  # abandoned at exit, run in full at next start


def test_second_sigterm_ends_the_grace_period_at_once(
    database_url: str, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    env = durable_env(tmp_path / "completions.txt", GRAPHFLOW_SHUTDOWN_GRACE_SECONDS="30")
    server = start_server(database_url, **env)
    run_id = create_run(server.url, "steady_chain", {"tag": "t", "slow": {"c00": 5.0}})
    _wait_started(database_url, run_id, "c00")
    server.proc.terminate()
    time.sleep(0.3)
    assert server.proc.poll() is None  # draining: c00 has 5 s to go, the grace is 30 s
    second_at = time.monotonic()
    server.proc.terminate()
    server.proc.wait(10)
    assert time.monotonic() - second_at < 3.0
    with open_store(database_url) as store:
        assert completed_event_nodes(store, run_id) == []
        assert store.expired_runs() == [run_id]  # released: the next server resumes it at once
