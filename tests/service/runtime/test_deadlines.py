"""Deadlines on the runner and a real store (both databases): ``timeout_seconds`` counts from a
run's first start and survives takeovers; ``queue_timeout_seconds`` bounds each wait in the
queue; a run past either ends ``timed_out``, whether its owner, a claim or the sweep sees it."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import pytest

from service.runtime.registry import discover
from service.runtime.runner import RunManager
from service.storage.continuations import NO_VALUE, Owner
from service.storage.records import RunStatus
from service.storage.sql import SqlRunStore
from service.storage.tables import Run, new_run_values, utcnow
from tests.conftest import make_settings
from tests.integration.durable_workflows import CHAIN

DURABLE_WORKFLOWS = "tests.integration.durable_workflows"


@pytest.fixture(scope="module")
def workflows() -> dict[str, Any]:
    return discover([DURABLE_WORKFLOWS])


@pytest.fixture
def manager(store: SqlRunStore, workflows: dict[str, Any]) -> RunManager:
    settings = make_settings(store.url, workflows=[DURABLE_WORKFLOWS])
    return RunManager(store, workflows, settings, lambda _rid: None)


def _create(
    manager: RunManager,
    graph: str,
    run_input: dict[str, Any],
    *,
    owner_id: str | None = "self",
    **deadlines: float,
) -> str:
    """Store a queued run with ``deadlines`` (``timeout_seconds``, ``queue_timeout_seconds``)
    as the API does, owned by ``manager`` (``owner_id="self"``), another owner, or none."""
    values = new_run_values(
        run_id=str(uuid.uuid4()),
        graph=graph,
        input=run_input,
        max_concurrent=None,
        idempotency_key=None,
        owner_id=manager.owner_id if owner_id == "self" else owner_id,
        lease_seconds=30,
        **deadlines,
    )
    assert manager.create(values).result(10)
    return str(values["id"])


def _run(store: SqlRunStore, run_id: str) -> Run:
    run = store.get_run(run_id)
    assert run is not None
    return run


def _assert_timed_out(run: Run, field: str) -> str:
    """Assert the run ended ``timed_out`` for the deadline ``field``; return its message."""
    assert run.status == RunStatus.TIMED_OUT, (run.status, run.error)
    assert run.finished_at is not None and run.lease_expires_at is None
    assert run.error is not None and run.error["type"] == "DeadlineExceeded"
    message: str = run.error["message"]
    assert f"({field})" in message, run.error
    return message


def _last_event(store: SqlRunStore, run_id: str) -> Any:
    return store.events_after(run_id, 0, 10_000)[-1]


def test_a_run_past_its_deadline_ends_timed_out_with_its_nodes_in_flight_as_on_cancel(
    store: SqlRunStore, manager: RunManager
) -> None:
    rid = _create(manager, "steady_chain", {"tag": "t", "delay": 0.1}, timeout_seconds=0.35)
    began = time.monotonic()
    manager.execute(rid)
    took = time.monotonic() - began

    run = _run(store, rid)
    message = _assert_timed_out(run, "timeout_seconds")
    assert run.started_at is not None and run.deadline_at is not None
    assert run.deadline_at == run.started_at + timedelta(seconds=0.35)
    assert "deadline of 0.35 s" in message
    assert f"counted from its first start at {run.started_at.isoformat()}" in message
    assert 0.35 <= took < 1.0, took  # at the deadline, after the node in flight finished
    completed = store.journal(rid)
    assert 2 <= len(completed) < len(CHAIN)
    # The node in flight finished (as on cancel): no node run is left running.
    assert {r.status for r in store.node_runs(rid)} == {"succeeded"}
    last = _last_event(store, rid)
    assert last.type == "run_timed_out"
    assert last.data["status"] == "timed_out" and last.data["error"] == run.error


def test_a_run_that_ends_before_its_deadline_succeeds_and_keeps_it(
    store: SqlRunStore, manager: RunManager
) -> None:
    rid = _create(manager, "steady_chain", {"tag": "t", "delay": 0}, timeout_seconds=30)
    manager.execute(rid)
    run = _run(store, rid)
    assert run.status == "succeeded"
    assert run.deadline_at is not None and run.started_at is not None
    assert run.deadline_at - run.started_at == timedelta(seconds=30)
    started = next(e for e in store.events_after(rid, 0) if e.type == "run_started")
    assert started.data["deadline_at"] == run.deadline_at.isoformat()


def test_a_deadline_counts_from_the_first_start_across_a_takeover(
    store: SqlRunStore, manager: RunManager
) -> None:
    rid = _create(
        manager, "steady_chain", {"tag": "t", "delay": 0.1}, owner_id="dead", timeout_seconds=0.6
    )
    first = store.claim_run(rid, "dead", 0.05)  # started by a process that died at once
    assert first is not None and first.deadline_at is not None
    time.sleep(0.2)

    assert manager.recover() == [rid]
    taken = _run(store, rid)
    assert taken.deadline_at == first.deadline_at  # a takeover keeps it
    manager.execute(manager._queue.get_nowait() or "")

    run = _run(store, rid)
    _assert_timed_out(run, "timeout_seconds")
    assert run.deadline_at == first.deadline_at and run.finished_at is not None
    # Ended at the first start's deadline, not a full timeout after the takeover.
    late = (run.finished_at - first.deadline_at).total_seconds()
    assert 0 <= late < 0.3, late
    assert len(store.journal(rid)) < len(CHAIN)


def test_a_run_of_a_dead_owner_past_its_deadline_is_ended_by_the_sweep_not_taken_over(
    store: SqlRunStore, manager: RunManager
) -> None:
    rid = _create(manager, "steady_chain", {"tag": "t"}, owner_id="dead", timeout_seconds=0.1)
    store.claim_run(rid, "dead", 0.05)
    time.sleep(0.2)

    assert manager.recover() == []
    _assert_timed_out(_run(store, rid), "timeout_seconds")
    assert _last_event(store, rid).type == "run_timed_out"


def test_a_run_its_live_owner_executes_is_left_to_it_by_the_sweep(
    store: SqlRunStore, manager: RunManager
) -> None:
    rid = _create(manager, "steady_chain", {"tag": "t"}, owner_id="alive", timeout_seconds=0.05)
    store.claim_run(rid, "alive", 30)
    time.sleep(0.1)

    assert manager.recover() == [] and store.time_out_overdue() == []
    assert _run(store, rid).status == "running"  # its owner's timer ends it


def test_a_queued_run_past_its_queue_deadline_is_not_claimed_and_the_sweep_ends_it(
    store: SqlRunStore, manager: RunManager
) -> None:
    rid = _create(manager, "steady_chain", {"tag": "t"}, owner_id=None, queue_timeout_seconds=0.1)
    waiting = _create(manager, "steady_chain", {"tag": "t"}, owner_id=None)
    queued = _run(store, rid)
    assert queued.queue_deadline_at == queued.created_at + timedelta(seconds=0.1)
    time.sleep(0.2)

    claimed = store.claim_next("worker", 30, 10)
    assert [r.id for r in claimed] == [waiting]  # the overdue run is skipped, not claimed
    assert store.claim_run(rid, "worker", 30) is None
    assert _run(store, rid).status == "queued"

    manager.recover()
    run = _run(store, rid)
    message = _assert_timed_out(run, "queue_timeout_seconds")
    assert run.started_at is None
    queued_at = run.created_at.isoformat()
    assert (
        f"longer than 0.1 s (queue_timeout_seconds) to start, since it was queued at {queued_at}"
        in message
    )
    assert [e.type for e in store.events_after(rid, 0)] == ["run_timed_out"]


def test_a_queued_run_within_its_queue_deadline_starts_as_usual(
    store: SqlRunStore, manager: RunManager
) -> None:
    rid = _create(manager, "steady_chain", {"tag": "t", "delay": 0}, queue_timeout_seconds=30)
    manager.execute(rid)
    assert _run(store, rid).status == "succeeded"


def test_the_runner_ends_a_run_of_its_own_it_finds_past_its_queue_deadline(
    store: SqlRunStore, manager: RunManager
) -> None:
    rid = _create(manager, "steady_chain", {"tag": "t"}, queue_timeout_seconds=0.05)
    time.sleep(0.1)
    manager.execute(rid)  # its slot came too late: the claim refuses it, and it ends
    run = _run(store, rid)
    _assert_timed_out(run, "queue_timeout_seconds")
    assert store.node_runs(rid) == []


def test_an_interrupted_run_keeps_counting_and_the_sweep_ends_it_past_its_deadline(
    store: SqlRunStore, manager: RunManager
) -> None:
    rid = _create(manager, "two_questions", {"tag": "t", "delay": 0}, timeout_seconds=0.2)
    manager.execute(rid)
    assert _run(store, rid).status == "interrupted"
    manager.recover()
    assert _run(store, rid).status == "interrupted"  # not yet
    time.sleep(0.25)

    manager.recover()
    run = _run(store, rid)
    _assert_timed_out(run, "timeout_seconds")
    assert run.interrupts is None


def test_an_interrupted_run_resumed_past_its_deadline_ends_timed_out_without_running_on(
    store: SqlRunStore, manager: RunManager
) -> None:
    rid = _create(manager, "two_questions", {"tag": "t", "delay": 0}, timeout_seconds=0.2)
    manager.execute(rid)
    legal, finance = (i["id"] for i in _run(store, rid).interrupts or [])
    time.sleep(0.25)

    owner = Owner(manager.owner_id, 30, None, announce=False)
    store.resume_run(rid, {legal: "yes", finance: "no"}, NO_VALUE, owner)
    manager.execute(rid)
    run = _run(store, rid)
    _assert_timed_out(run, "timeout_seconds")
    rows = {r.node: r.status for r in store.node_runs(rid)}
    assert rows == {"start": "succeeded", "legal": "interrupted", "finance": "interrupted"}


def test_a_resumed_run_waits_in_the_queue_at_most_its_queue_timeout_again(
    store: SqlRunStore, manager: RunManager
) -> None:
    rid = _create(manager, "two_questions", {"tag": "t", "delay": 0}, queue_timeout_seconds=0.2)
    manager.execute(rid)
    time.sleep(0.25)  # past the first queue deadline: it does not apply to the next wait
    legal, finance = (i["id"] for i in _run(store, rid).interrupts or [])

    before = utcnow()
    owner = Owner(manager.owner_id, 30, None, announce=False)
    resumed = store.resume_run(rid, {legal: 1, finance: 2}, NO_VALUE, owner)
    assert resumed.queue_deadline_at is not None and resumed.queue_deadline_at > before
    manager.execute(rid)
    assert _run(store, rid).status == "succeeded"


def test_a_timed_out_run_can_be_retried_with_a_fresh_deadline(
    store: SqlRunStore, manager: RunManager
) -> None:
    rid = _create(manager, "steady_chain", {"tag": "t", "delay": 0.1}, timeout_seconds=0.35)
    manager.execute(rid)
    first = _run(store, rid)
    assert first.status == "timed_out" and first.deadline_at is not None
    done_before = len(store.journal(rid))

    owner = Owner(manager.owner_id, 30, None, announce=False)
    retried = store.retry_run(rid, owner)
    assert retried.status == "queued" and retried.deadline_at is None
    retry_event = _last_event(store, rid)
    assert retry_event.type == "run_retried"
    assert retry_event.data["previous_status"] == "timed_out"
    manager.execute(rid)

    again = _run(store, rid)
    assert again.deadline_at is not None and again.started_at is not None
    assert again.deadline_at > first.deadline_at
    assert again.deadline_at == again.started_at + timedelta(seconds=0.35)  # counted anew
    assert len(store.journal(rid)) > done_before  # it went on from where it stopped
