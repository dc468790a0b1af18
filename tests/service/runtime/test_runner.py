"""The run manager executing real graphs against a real store."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest

from service.runtime.registry import discover
from service.runtime.runner import RunManager
from service.storage.sql import SqlRunStore
from tests.conftest import SAMPLE_WORKFLOWS, make_settings


@pytest.fixture(scope="module")
def workflows() -> dict[str, Any]:
    return discover([SAMPLE_WORKFLOWS])


def _manager(
    store: SqlRunStore, workflows: dict[str, Any], notify: Any = None, **settings: Any
) -> RunManager:
    return RunManager(
        store, workflows, make_settings(store.url, **settings), notify or (lambda _rid: None)
    )


def _queue(store: SqlRunStore, manager: RunManager, graph: str, input: dict[str, Any]) -> str:
    run, _ = store.create_run(
        run_id=str(uuid.uuid4()),
        graph=graph,
        input=input,
        max_concurrent=None,
        idempotency_key=None,
        owner_id=manager.owner_id,
        lease_seconds=30,
    )
    return run.id


def test_each_event_is_stored_before_streams_are_notified(
    store: SqlRunStore, workflows: dict[str, Any]
) -> None:
    seen: list[list[str]] = []
    manager = _manager(
        store,
        workflows,
        notify=lambda rid: seen.append([e.type for e in store.events_after(rid, 0)]),
    )
    rid = _queue(store, manager, "three_step", {"x": 1, "delay": 0})
    manager.execute(rid)
    # Events are written in batches: every notification finds more events stored than the
    # previous one, and the last finds them all.
    assert all(len(a) < len(b) and b[: len(a)] == a for a, b in zip(seen, seen[1:], strict=False))
    assert seen[-1] == ["run_started"] + ["node_started", "node_completed"] * 3 + ["run_succeeded"]
    run = store.get_run(rid)
    assert run is not None and run.status == "succeeded" and run.output is not None
    assert run.output["x"] == 30 and run.started_at is not None and run.finished_at is not None
    completed = [e for e in store.events_after(rid, 0) if e.type == "node_completed"]
    assert completed[0].data["update"] == {"x": 2, "trace": ["a"]}
    assert completed[0].data["duration_ms"] >= 0


def test_failing_node_fails_the_run_with_the_node_error(
    store: SqlRunStore, workflows: dict[str, Any]
) -> None:
    manager = _manager(store, workflows)
    rid = _queue(store, manager, "failing", {"x": 1})
    manager.execute(rid)
    run = store.get_run(rid)
    assert run is not None and run.status == "failed"
    assert run.error == {
        "type": "ValueError",
        "message": "boom: the node failed on purpose",
        "node": "boom",
    }
    rows = {r.node: r for r in store.node_runs(rid)}
    assert rows["boom"].status == "failed" and rows["boom"].error is not None
    assert store.events_after(rid, 0)[-1].type == "run_failed"


def test_cancel_stops_a_running_run_and_a_queued_one_directly(
    store: SqlRunStore, workflows: dict[str, Any]
) -> None:
    manager = _manager(store, workflows)
    queued = _queue(store, manager, "slow_chain", {"delay": 0.1})
    assert manager.cancel(queued)
    manager.execute(queued)  # nothing to do: it is already cancelled
    assert store.get_run(queued).status == "cancelled"  # type: ignore[union-attr]
    assert store.node_runs(queued) == []

    rid = _queue(store, manager, "slow_chain", {"delay": 0.1})
    worker = threading.Thread(target=manager.execute, args=(rid,))
    worker.start()
    while not any(r.status == "succeeded" for r in store.node_runs(rid)):
        time.sleep(0.01)
    manager.cancel(rid)
    worker.join(10)
    run = store.get_run(rid)
    assert run is not None and run.status == "cancelled"
    assert 1 <= len(store.node_runs(rid)) < 8
    assert store.events_after(rid, 0)[-1].type == "run_cancelled"


def test_interrupted_run_is_resumed_from_its_journal_by_another_owner(
    store: SqlRunStore, workflows: dict[str, Any]
) -> None:
    stopped = False
    first: RunManager

    def notify(rid: str) -> None:
        nonlocal stopped
        completed = [e for e in store.events_after(rid, 0) if e.type == "node_completed"]
        if len(completed) >= 2 and not stopped:
            stopped = True
            first.stop(grace_seconds=0)  # process going away mid-run

    first = _manager(store, workflows, notify=notify)
    rid = _queue(store, first, "slow_chain", {"delay": 0.01})
    first.execute(rid)
    run = store.get_run(rid)
    assert run is not None and run.status == "running"  # left for the next process
    done_before = [r["node"] for r in store.journal(rid)]
    assert done_before[:2] == ["s0", "s1"]

    second = _manager(store, workflows)
    assert second.recover() == [rid]
    second.execute(second._queue.get_nowait() or "")
    run = store.get_run(rid)
    assert run is not None and run.status == "succeeded" and run.recovery_attempts == 1
    assert run.output is not None and run.output["trace"] == [f"s{i}" for i in range(8)]
    started = [e.data["node"] for e in store.events_after(rid, 0) if e.type == "node_started"]
    for node in done_before:
        assert started.count(node) == 1  # completed nodes were not executed again


def test_run_of_an_unloaded_graph_fails_cleanly(
    store: SqlRunStore, workflows: dict[str, Any]
) -> None:
    manager = _manager(store, workflows)
    rid = _queue(store, manager, "gone", {})
    manager.execute(rid)
    run = store.get_run(rid)
    assert run is not None and run.status == "failed"
    assert run.error is not None and run.error["type"] == "GraphNotFound"


def test_worker_threads_run_submitted_runs_concurrently(
    store: SqlRunStore, workflows: dict[str, Any]
) -> None:
    manager = _manager(store, workflows, max_concurrent_runs=4)
    manager.start()
    try:
        rids = [_queue(store, manager, "three_step", {"x": i, "delay": 0.05}) for i in range(8)]
        for rid in rids:
            manager.submit(rid)
        deadline = time.monotonic() + 20
        while any(store.get_run(r).status != "succeeded" for r in rids):  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        manager.stop(grace_seconds=1)
