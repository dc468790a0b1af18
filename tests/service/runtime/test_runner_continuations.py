"""Runs that go on after they settled, on the runner and a real store: interrupted and resumed,
retried after a failure, forked from a node run; and the webhook outbox rows they leave."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from service.errors import (
    ConflictError,
    InvalidResumeError,
    NodeRunNotFoundError,
    RunNotFoundError,
    TooManyActiveRunsError,
)
from service.runtime.registry import discover
from service.runtime.runner import RunManager
from service.storage.continuations import NO_VALUE, Owner
from service.storage.filters import RunFilter
from service.storage.sql import SqlRunStore
from service.storage.tables import Run
from tests.conftest import make_settings
from tests.integration.durable_workflows import TEN_STEPS


@pytest.fixture(scope="module")
def workflows() -> dict[str, Any]:
    return discover(["tests.integration.durable_workflows"])


@pytest.fixture
def manager(store: SqlRunStore, workflows: dict[str, Any]) -> RunManager:
    return RunManager(store, workflows, make_settings(store.url), lambda _rid: None)


def _owner(manager: RunManager, max_active_runs: int | None = None) -> Owner:
    return Owner(manager.owner_id, 30, max_active_runs, announce=False)


def _queue(store: SqlRunStore, manager: RunManager, graph: str, run_input: dict[str, Any]) -> str:
    run, _ = store.create_run(
        run_id=str(uuid.uuid4()),
        graph=graph,
        input=run_input,
        max_concurrent=None,
        idempotency_key=None,
        owner_id=manager.owner_id,
        lease_seconds=30,
    )
    return run.id


def _start(store: SqlRunStore, manager: RunManager, graph: str, run_input: dict[str, Any]) -> str:
    run_id = _queue(store, manager, graph, run_input)
    manager.execute(run_id)
    return run_id


def _run(store: SqlRunStore, run_id: str) -> Run:
    run = store.get_run(run_id)
    assert run is not None
    return run


def _event_types(store: SqlRunStore, run_id: str) -> list[str]:
    events = store.events_after(run_id, 0, 10_000)
    assert [e.seq for e in events] == sorted({e.seq for e in events})  # increasing, unique
    return [e.type for e in events]


def test_an_interrupted_run_waits_without_a_lease_and_says_for_what(
    store: SqlRunStore, manager: RunManager
) -> None:
    rid = _start(store, manager, "two_questions", {"tag": "t", "delay": 0})
    run = _run(store, rid)
    assert run.status == "interrupted"
    assert run.finished_at is None and run.lease_expires_at is None
    assert [(i["node"], i["payload"]) for i in run.interrupts or []] == [
        ("legal", {"question": "legal?"}),
        ("finance", {"question": "finance?"}),
    ]
    assert rid not in store.expired_runs()
    assert store.count_runs_by_status()["running"] == 0
    rows = {r.node: r.status for r in store.node_runs(rid)}
    assert rows == {"start": "succeeded", "legal": "interrupted", "finance": "interrupted"}
    last = store.events_after(rid, 0, 10_000)[-1]
    assert last.type == "run_interrupted" and last.data["interrupts"] == run.interrupts


def test_resumed_one_at_a_time_each_node_gets_its_own_value(
    store: SqlRunStore, manager: RunManager
) -> None:
    rid = _start(store, manager, "two_questions", {"tag": "t", "delay": 0})
    legal, finance = (i["id"] for i in _run(store, rid).interrupts or [])

    resumed = store.resume_run(rid, {legal: "yes"}, NO_VALUE, _owner(manager))
    assert resumed.status == "queued"
    manager.execute(rid)
    run = _run(store, rid)
    assert run.status == "interrupted"
    assert [i["id"] for i in run.interrupts or []] == [finance]

    store.resume_run(rid, None, 42, _owner(manager))  # the one node waiting: "value"
    manager.execute(rid)
    run = _run(store, rid)
    assert run.status == "succeeded", run.error
    assert run.output is not None and run.output["answers"] == {"legal": "yes", "finance": 42}
    assert run.resume_values == {legal: "yes", finance: 42}
    attempts = {r.node: r.attempt for r in store.node_runs(rid)}
    assert attempts == {"start": 1, "legal": 2, "finance": 3, "collect": 1}
    types = _event_types(store, rid)
    assert types.count("run_interrupted") == 2 and types.count("run_continued") == 2
    assert types[-1] == "run_succeeded"


def test_resume_refuses_what_the_run_does_not_wait_for(
    store: SqlRunStore, manager: RunManager
) -> None:
    rid = _start(store, manager, "two_questions", {"tag": "t", "delay": 0})
    with pytest.raises(InvalidResumeError, match="does not wait on"):
        store.resume_run(rid, {"9.9": 1}, NO_VALUE, _owner(manager))
    with pytest.raises(InvalidResumeError, match="exactly one waiting node"):
        store.resume_run(rid, None, "yes", _owner(manager))
    with pytest.raises(RunNotFoundError):
        store.resume_run(str(uuid.uuid4()), None, 1, _owner(manager))
    assert _run(store, rid).status == "interrupted"  # nothing changed

    done = _start(store, manager, "steady_chain", {"tag": "t", "delay": 0})
    with pytest.raises(ConflictError, match="is succeeded, not interrupted"):
        store.resume_run(done, None, 1, _owner(manager))


def test_cancelling_an_interrupted_run_ends_it_at_once(
    store: SqlRunStore, manager: RunManager
) -> None:
    rid = _start(store, manager, "two_questions", {"tag": "t", "delay": 0})
    assert manager.cancel(rid)
    run = _run(store, rid)
    assert run.status == "cancelled" and run.interrupts is None
    with pytest.raises(ConflictError):
        store.resume_run(rid, None, 1, _owner(manager))


def test_retry_replays_completed_nodes_and_reruns_the_failed_one(
    store: SqlRunStore, manager: RunManager, tmp_path: Path
) -> None:
    flag = tmp_path / "fail"
    flag.touch()
    rid = _start(store, manager, "ten_steps", {"tag": "t", "fail_flag": str(flag)})
    failed = _run(store, rid)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error["node"] == "n07"
    with pytest.raises(ConflictError, match="only a failed, cancelled or timed_out run"):
        store.retry_run(
            _start(store, manager, "steady_chain", {"tag": "x", "delay": 0}), _owner(manager)
        )

    flag.unlink()
    queued = store.retry_run(rid, _owner(manager))
    assert queued.status == "queued" and queued.error is None and queued.finished_at is None
    manager.execute(rid)
    run = _run(store, rid)
    assert run.status == "succeeded", run.error
    assert run.output is not None and run.output["trace"] == TEN_STEPS
    rows = {r.node: r for r in store.node_runs(rid)}
    assert rows["n07"].attempt == 2 and rows["n06"].attempt == 1
    types = _event_types(store, rid)
    assert types.index("run_failed") < types.index("run_retried") < types.index("run_succeeded")
    completed = [
        e.data["node"] for e in store.events_after(rid, 0, 10_000) if e.type == "node_completed"
    ]
    assert completed == TEN_STEPS  # n01..n06 before the failure, once; the rest after


def test_retry_and_resume_respect_the_active_run_cap(
    store: SqlRunStore, manager: RunManager, tmp_path: Path
) -> None:
    flag = tmp_path / "fail"
    flag.touch()
    rid = _start(store, manager, "ten_steps", {"tag": "t", "fail_flag": str(flag)})
    _queue(store, manager, "steady_chain", {"tag": "q"})
    with pytest.raises(TooManyActiveRunsError):
        store.retry_run(rid, _owner(manager, max_active_runs=1))
    assert _run(store, rid).status == "failed"


def test_fork_reuses_the_node_runs_completed_before_its_node_run(
    store: SqlRunStore, manager: RunManager, tmp_path: Path
) -> None:
    flag = tmp_path / "absent"
    source = _start(store, manager, "ten_steps", {"tag": "a", "fail_flag": str(flag)})
    n05 = next(r.activation_id for r in store.node_runs(source) if r.node == "n05")
    with pytest.raises(NodeRunNotFoundError):
        store.fork_run(source, "nope", {"tag": "b"}, str(uuid.uuid4()), _owner(manager))

    new_id = str(uuid.uuid4())
    forked = store.fork_run(
        source, n05, {"tag": "b", "fail_flag": str(flag)}, new_id, _owner(manager)
    )
    assert forked.status == "queued" and forked.input["tag"] == "b"
    assert {r.node for r in store.node_runs(new_id)} == set(TEN_STEPS[:4])
    manager.execute(new_id)
    run = _run(store, new_id)
    assert run.status == "succeeded", run.error
    assert run.output is not None and run.output["trace"] == TEN_STEPS
    ran = [
        e.data["node"] for e in store.events_after(new_id, 0, 10_000) if e.type == "node_completed"
    ]
    assert ran == TEN_STEPS[4:]
    assert _event_types(store, new_id)[:2] == ["run_forked", "run_started"]


def test_a_fork_carries_its_sources_tags_and_metadata_and_is_found_by_them(
    store: SqlRunStore, manager: RunManager, tmp_path: Path
) -> None:
    flag = tmp_path / "absent"
    run, _ = store.create_run(
        run_id=str(uuid.uuid4()),
        graph="ten_steps",
        input={"tag": "a", "fail_flag": str(flag)},
        max_concurrent=None,
        idempotency_key=None,
        owner_id=manager.owner_id,
        lease_seconds=30,
        run_metadata={"customer": "acme", "tier": 2},
        tags=["nightly", "billing"],
    )
    manager.execute(run.id)
    n05 = next(r.activation_id for r in store.node_runs(run.id) if r.node == "n05")
    forked = store.fork_run(
        run.id, n05, {"tag": "b", "fail_flag": str(flag)}, str(uuid.uuid4()), _owner(manager)
    )
    assert forked.tags == ["nightly", "billing"]
    assert forked.run_metadata == {"customer": "acme", "tier": 2}
    by_tags = store.list_runs(RunFilter(tags=["billing", "nightly"]), limit=10)
    by_metadata = store.list_runs(RunFilter(metadata={"customer": "acme"}), limit=10)
    for found in (by_tags, by_metadata):
        assert {r.id for r in found} == {run.id, forked.id}


def test_the_outbox_gets_a_delivery_when_a_run_with_a_webhook_pauses_and_ends(
    store: SqlRunStore, manager: RunManager
) -> None:
    rid = _queue(store, manager, "two_questions", {"tag": "t", "delay": 0})
    with store.transaction() as conn:
        conn.execute(update(Run).where(Run.id == rid).values(webhook_url="http://h.test/x"))
    manager.execute(rid)
    assert [d["event"] for d in store.webhook_deliveries(rid)] == ["run_interrupted"]
    waiting = [i["id"] for i in _run(store, rid).interrupts or []]
    store.resume_run(rid, dict.fromkeys(waiting, 1), NO_VALUE, _owner(manager))
    manager.execute(rid)
    deliveries = store.webhook_deliveries(rid)
    assert [d["event"] for d in deliveries] == ["run_interrupted", "run_succeeded"]
    assert all(d["status"] == "pending" and d["attempts"] == 0 for d in deliveries)

    plain = _start(store, manager, "steady_chain", {"tag": "t", "delay": 0})
    assert store.webhook_deliveries(plain) == []
