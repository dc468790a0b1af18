"""The runner's caps and lease rules, and the store's take-over rules, on both databases."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from service.runtime.registry import discover
from service.runtime.runner import RunManager
from service.storage.records import NodeEventWrite
from service.storage.sql import SqlRunStore
from service.storage.tables import Run, utcnow
from tests.conftest import make_settings
from tests.integration.durable_workflows import CHAIN

DURABLE_WORKFLOWS = "tests.integration.durable_workflows"


@pytest.fixture(scope="module")
def workflows() -> dict[str, Any]:
    return discover([DURABLE_WORKFLOWS])


def _manager(store: SqlRunStore, workflows: dict[str, Any], **settings: Any) -> RunManager:
    values = {"workflows": [DURABLE_WORKFLOWS], **settings}
    return RunManager(store, workflows, make_settings(store.url, **values), lambda _rid: None)


def _queue(store: SqlRunStore, graph: str, input: dict[str, Any], owner: str) -> str:
    run, _ = store.create_run(
        run_id=str(uuid.uuid4()),
        graph=graph,
        input=input,
        max_concurrent=None,
        idempotency_key=None,
        owner_id=owner,
        lease_seconds=30,
    )
    return run.id


def _event(node: str, activation: str, status: str) -> NodeEventWrite:
    now = utcnow()
    done = status != "running"
    return NodeEventWrite(
        type="node_completed" if done else "node_started",
        activation_id=activation,
        node=node,
        status=status,
        attempt=1,
        parents=(),
        started_at=now,
        finished_at=now if done else None,
        duration_ms=0.0 if done else None,
        update={} if done else None,
        goto=[] if done else None,
        error=None,
        data={"node": node},
    )


def _expire(store: SqlRunStore, run_id: str) -> None:
    with store.write_engine.begin() as conn:
        past = utcnow() - timedelta(seconds=1)
        conn.execute(update(Run).where(Run.id == run_id).values(lease_expires_at=past))


# -- caps -----------------------------------------------------------------------------------


def test_run_over_the_node_run_cap_fails_naming_the_node_and_the_cap(
    store: SqlRunStore, workflows: dict[str, Any]
) -> None:
    capped = _manager(store, workflows, max_node_runs=10)
    rid = _queue(store, "fan_out_20", {"tag": "t", "delay": 0}, capped.owner_id)
    capped.execute(rid)
    run = store.get_run(rid)
    assert run is not None and run.status == "failed" and run.error is not None
    assert run.error["type"] == "NodeRunLimitError"
    assert "past the limit of 10 node runs" in run.error["message"]
    assert "GRAPHFLOW_MAX_NODE_RUNS=10" in run.error["message"]
    assert run.error["node"] in run.error["message"]
    assert len(store.node_runs(rid)) <= 10

    exact = _manager(store, workflows, max_node_runs=20)  # the graph has exactly 20 node runs
    rid = _queue(store, "fan_out_20", {"tag": "t", "delay": 0}, exact.owner_id)
    exact.execute(rid)
    assert store.get_run(rid).status == "succeeded"  # type: ignore[union-attr]


def test_run_past_the_maximum_duration_fails_naming_the_cap(
    store: SqlRunStore, workflows: dict[str, Any]
) -> None:
    manager = _manager(store, workflows, max_run_seconds=0.3)
    rid = _queue(store, "steady_chain", {"tag": "t", "delay": 0.1}, manager.owner_id)
    began = time.monotonic()
    manager.execute(rid)
    took = time.monotonic() - began
    run = store.get_run(rid)
    assert run is not None and run.status == "failed", run and run.error
    assert run.error == {
        "type": "RunTimeoutError",
        "message": "run exceeded the maximum duration of 0.3 s (GRAPHFLOW_MAX_RUN_SECONDS)",
        "node": None,
    }
    assert 0.3 <= took < 1.0, took  # stopped at the cap, after the node in flight
    assert 2 <= len(store.journal(rid)) < len(CHAIN)


def test_resumed_run_already_past_its_maximum_duration_fails_without_running_a_node(
    store: SqlRunStore, workflows: dict[str, Any]
) -> None:
    rid = _queue(store, "steady_chain", {"tag": "t", "delay": 0}, "dead")
    store.claim_run(rid, "dead", -1)  # started by a process that died at once
    time.sleep(0.3)
    manager = _manager(store, workflows, max_run_seconds=0.2)
    assert manager.recover() == [rid]
    manager.execute(manager._queue.get_nowait() or "")
    run = store.get_run(rid)
    assert run is not None and run.status == "failed" and run.error is not None
    assert "maximum duration of 0.2 s" in run.error["message"]
    assert store.node_runs(rid) == []


# -- leases ---------------------------------------------------------------------------------


def test_runner_stops_without_finishing_a_run_another_process_took_over(
    store: SqlRunStore, workflows: dict[str, Any]
) -> None:
    manager = _manager(store, workflows, lease_seconds=1, heartbeat_seconds=0.05)
    rid = _queue(store, "steady_chain", {"tag": "t", "delay": 0.1}, manager.owner_id)
    manager.start()
    try:
        manager.submit(rid)
        while len(store.journal(rid)) < 2:
            time.sleep(0.01)
        # What a take-over by another process does once our lease has expired:
        with store.write_engine.begin() as conn:
            lease = utcnow() + timedelta(seconds=30)
            conn.execute(
                update(Run).where(Run.id == rid).values(owner_id="other", lease_expires_at=lease)
            )
        seen = len(store.events_after(rid, 0))
        time.sleep(1.0)  # several heartbeats, and more than the 0.1 s node in flight
        run = store.get_run(rid)
        assert run is not None and run.status == "running" and run.owner_id == "other"
        # At most the node in flight when the heartbeat noticed was written; nothing after.
        assert len(store.events_after(rid, 0)) <= seen + 2
        assert len(store.journal(rid)) < len(CHAIN)
    finally:
        manager.stop(grace_seconds=1)


def test_run_created_after_a_lease_renewal_is_not_mistaken_for_a_lost_one(
    store: SqlRunStore, workflows: dict[str, Any]
) -> None:
    manager = _manager(store, workflows)
    stale = store.heartbeat(manager.owner_id, 30)  # taken before the run exists
    rid = _queue(store, "steady_chain", {"tag": "t", "delay": 0.05}, manager.owner_id)
    worker = threading.Thread(target=manager.execute, args=(rid,))
    worker.start()
    while not store.journal(rid):
        time.sleep(0.01)
    manager._on_renewal(stale)  # the renewal reaches the runner once the run is executing
    worker.join(30)
    run = store.get_run(rid)
    assert run is not None and run.status == "succeeded"


def test_own_expired_runs_are_not_taken_over_by_the_same_process(store: SqlRunStore) -> None:
    mine = _queue(store, "steady_chain", {"tag": "t"}, "me")
    theirs = _queue(store, "steady_chain", {"tag": "t"}, "them")
    _expire(store, mine)
    _expire(store, theirs)
    assert store.expired_runs(exclude_owner="me") == [theirs]
    assert sorted(store.expired_runs()) == sorted([mine, theirs])


def test_writes_are_fenced_once_another_process_owns_the_run(
    store: SqlRunStore, workflows: dict[str, Any]
) -> None:
    # No heartbeat runs here, so only the fenced writes can notice the take-over.
    manager = _manager(store, workflows, heartbeat_seconds=60)
    rid = _queue(store, "steady_chain", {"tag": "t", "delay": 0.1}, manager.owner_id)
    worker = threading.Thread(target=manager.execute, args=(rid,))
    worker.start()
    while not store.journal(rid):
        time.sleep(0.01)
    with store.write_engine.begin() as conn:
        conn.execute(update(Run).where(Run.id == rid).values(owner_id="other"))
    seen = len(store.events_after(rid, 0))
    worker.join(30)
    run = store.get_run(rid)
    assert run is not None and run.status == "running" and run.owner_id == "other"
    assert len(store.events_after(rid, 0)) == seen
    assert len(store.journal(rid)) < len(CHAIN)


def test_stop_releases_the_lease_so_the_next_process_resumes_at_once(
    store: SqlRunStore, workflows: dict[str, Any]
) -> None:
    first = _manager(store, workflows)  # a 30 s lease
    rid = _queue(store, "steady_chain", {"tag": "t", "delay": 0.05}, first.owner_id)
    first.start()
    first.submit(rid)
    while len(store.journal(rid)) < 2:
        time.sleep(0.01)
    first.stop(grace_seconds=1)
    assert store.get_run(rid).status == "running"  # type: ignore[union-attr]
    assert store.expired_runs() == [rid]
    second = _manager(store, workflows)
    assert second.recover() == [rid]


# -- take-over rules ------------------------------------------------------------------------


def test_recovery_attempts_count_only_recoveries_without_progress(store: SqlRunStore) -> None:
    rid = _queue(store, "g", {}, "a")
    store.claim_run(rid, "a", 30)
    store.record_node_event(rid, _event("first", "0", "succeeded"))
    store.record_node_event(rid, _event("stuck", "1", "running"))
    for attempt, owner in [(1, "b"), (2, "c")]:
        _expire(store, rid)
        run = store.take_over(rid, owner, 30, max_attempts=2)
        assert run is not None and run.recovery_attempts == attempt
    store.record_node_event(rid, _event("stuck", "1", "succeeded"))  # progress
    store.record_node_event(rid, _event("next", "2", "running"))
    _expire(store, rid)
    run = store.take_over(rid, "d", 30, max_attempts=2)
    assert run is not None and run.recovery_attempts == 1
    resumed = [e.data for e in store.events_after(rid, 0) if e.type == "run_resumed"]
    assert [r["recovery_attempt"] for r in resumed] == [1, 2, 1]
    assert resumed[0]["interrupted"] == [{"node": "stuck", "node_run_id": "1"}]
    assert resumed[2]["interrupted"] == [{"node": "next", "node_run_id": "2"}]


def test_run_dying_on_the_same_node_is_failed_naming_the_node_and_the_attempts(
    store: SqlRunStore,
) -> None:
    rid = _queue(store, "g", {}, "a")
    store.claim_run(rid, "a", 30)
    store.record_node_event(rid, _event("poison", "0.1", "running"))
    for owner in ["b", "c"]:
        _expire(store, rid)
        assert store.take_over(rid, owner, 30, max_attempts=2) is not None
    _expire(store, rid)
    assert store.take_over(rid, "d", 30, max_attempts=2) is None
    run = store.get_run(rid)
    assert run is not None and run.status == "failed"
    assert run.error == {
        "type": "RecoveryLimitExceeded",
        "message": (
            "the process running this run died 3 times in a row while node 'poison' "
            "(node run 0.1) was in flight, without progress in between; gave up after 2 "
            "recovery attempts (GRAPHFLOW_MAX_RECOVERY_ATTEMPTS=2)"
        ),
        "node": "poison",
    }


@pytest.mark.parametrize("operation", ["take_over", "claim_run"])
def test_two_processes_racing_for_runs_never_both_get_one(
    database_url: str, store: SqlRunStore, operation: str
) -> None:
    runs = [_queue(store, "g", {}, "dead") for _ in range(20)]
    for rid in runs:
        if operation == "take_over":
            store.claim_run(rid, "dead", 30)
            _expire(store, rid)
    # Two stores with their own connection pools stand for two processes.
    others = [SqlRunStore(database_url, pool_size=2) for _ in range(2)]
    winners: dict[str, list[str]] = {rid: [] for rid in runs}
    barrier = threading.Barrier(len(others))

    def race(i: int) -> None:
        owner = f"p{i}"
        barrier.wait()
        for rid in runs:
            if operation == "take_over":
                got = others[i].take_over(rid, owner, 30, max_attempts=5)
            else:
                got = others[i].claim_run(rid, owner, 30)
            if got is not None:
                winners[rid].append(owner)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(others))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for other in others:
        other.close()
    assert all(len(w) == 1 for w in winners.values()), winners
    for rid, [owner] in winners.items():
        assert store.get_run(rid).owner_id == owner  # type: ignore[union-attr]
