"""The SQL run store on both databases."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import update

from service.storage.filters import RunFilter
from service.storage.records import NodeEventWrite, RunStatus
from service.storage.sql import SqlRunStore
from service.storage.tables import Run, utcnow


def _new_run(
    store: SqlRunStore, key: str | None = None, lease: float = 30.0, owner: str = "me"
) -> str:
    run, created = store.create_run(
        run_id=str(uuid.uuid4()),
        graph="g",
        input={"x": 1},
        max_concurrent=None,
        idempotency_key=key,
        owner_id=owner,
        lease_seconds=lease,
    )
    assert created or key is not None
    return run.id


def _completed(activation: str, node: str, update: dict[str, Any]) -> NodeEventWrite:
    now = datetime.now(UTC)
    return NodeEventWrite(
        type="node_completed",
        activation_id=activation,
        node=node,
        status="succeeded",
        attempt=1,
        parents=(),
        started_at=now,
        finished_at=now,
        duration_ms=0.5,
        update=update,
        goto=[],
        error=None,
        data={"node": node, "update": update},
    )


def test_created_run_is_queued_and_round_trips(store: SqlRunStore) -> None:
    rid = _new_run(store)
    run = store.get_run(rid)
    assert run is not None and run.status == "queued" and run.input == {"x": 1}
    assert run.created_at.tzinfo is not None and run.owner_id == "me"
    assert store.get_run(str(uuid.uuid4())) is None


def test_idempotency_key_race_yields_one_run(store: SqlRunStore) -> None:
    ids: list[str] = []
    barrier = threading.Barrier(6)

    def create() -> None:
        barrier.wait()
        ids.append(_new_run(store, key="k"))

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and len(ids) == 6


def test_events_get_per_run_increasing_seq_and_claim_emits_run_started(
    store: SqlRunStore,
) -> None:
    rid, other = _new_run(store), _new_run(store)
    assert store.claim_run(rid, "me", 30) is not None
    assert store.claim_run(rid, "someone-else", 30) is None  # already running elsewhere
    assert store.record_node_event(rid, _completed("0", "a", {"v": 1})) == 2
    assert store.record_node_event(other, _completed("0", "a", {"v": 1})) == 1
    assert store.finish_run(rid, "succeeded", output={"v": 1}, error=None) == 3
    assert store.finish_run(rid, "failed", output=None, error=None) is None  # already ended
    assert [(e.seq, e.type) for e in store.events_after(rid, 0)] == [
        (1, "run_started"),
        (2, "node_completed"),
        (3, "run_succeeded"),
    ]
    assert [e.seq for e in store.events_after(rid, 2)] == [3]


def test_node_event_upserts_one_row_per_activation_and_builds_the_journal(
    store: SqlRunStore,
) -> None:
    rid = _new_run(store)
    store.claim_run(rid, "me", 30)
    now = datetime.now(UTC)
    started = NodeEventWrite(
        type="node_started",
        activation_id="0",
        node="a",
        status="running",
        attempt=1,
        parents=(),
        started_at=now,
        finished_at=None,
        duration_ms=None,
        update=None,
        goto=None,
        error=None,
        data={},
    )
    store.record_node_event(rid, started)
    store.record_node_event(rid, _completed("0", "a", {"v": 1}))
    store.record_node_event(rid, _completed("1", "b", {"w": [1, 2]}))
    rows = store.node_runs(rid)
    assert [(r.activation_id, r.status) for r in rows] == [("0", "succeeded"), ("1", "succeeded")]
    assert store.journal(rid) == [
        {"run_id": "0", "node": "a", "update": {"v": 1}, "goto": []},
        {"run_id": "1", "node": "b", "update": {"w": [1, 2]}, "goto": []},
    ]


def test_names_users_choose_have_no_length_limit(store: SqlRunStore) -> None:
    """Graph and node names, node-run ids and owner ids are TEXT: Postgres enforces VARCHAR
    lengths mid-run, SQLite never did."""
    graph, node, activation, owner = "g" * 1000, "n" * 1000, ".".join(["7"] * 500), "o" * 1000
    run, _ = store.create_run(
        run_id=str(uuid.uuid4()),
        graph=graph,
        input={},
        max_concurrent=None,
        idempotency_key=None,
        owner_id=owner,
        lease_seconds=30,
    )
    assert store.claim_run(run.id, owner, 30) is not None
    store.record_node_event(run.id, _completed(activation, node, {"v": 1}), owner)
    [row] = store.node_runs(run.id)
    assert (row.activation_id, row.node) == (activation, node)
    stored = store.get_run(run.id)
    assert stored is not None and (stored.graph, stored.owner_id) == (graph, owner)
    assert [r.id for r in store.list_runs(RunFilter(graph=graph), limit=5)] == [run.id]


def test_list_runs_keyset_pages_newest_first(store: SqlRunStore) -> None:
    ids = [_new_run(store) for _ in range(5)]
    first = store.list_runs(RunFilter(), limit=2)
    assert [r.id for r in first] == ids[::-1][:2]
    last = first[-1]
    rest = store.list_runs(RunFilter(), limit=10, before=(last.created_at, last.id))
    assert [r.id for r in rest] == ids[::-1][2:]
    assert store.list_runs(RunFilter(graph="other"), limit=10) == []


def test_cancel_queued_only_cancels_queued_runs(store: SqlRunStore) -> None:
    queued, running = _new_run(store), _new_run(store)
    store.claim_run(running, "me", 30)
    assert store.cancel_queued(queued) is True
    assert store.cancel_queued(running) is False
    assert store.get_run(queued).status == "cancelled"  # type: ignore[union-attr]
    assert store.events_after(queued, 0)[-1].type == "run_cancelled"


def test_cancel_queued_leaves_a_run_claimed_meanwhile_running(store: SqlRunStore) -> None:
    """A claim that commits while the queued-cancel waits wins: the run is not cancelled under
    its worker (the check and the write of ``cancel_queued`` are one statement)."""
    rid = _new_run(store)
    outcome: list[bool] = []
    # Another process's claim, in flight: the row is changed but not yet committed.
    with store.write_engine.connect() as claim:
        with claim.begin():
            claim.execute(
                update(Run)
                .where(Run.id == rid)
                .values(status=RunStatus.RUNNING, owner_id="other", started_at=utcnow())
            )
            cancel = threading.Thread(target=lambda: outcome.append(store.cancel_queued(rid)))
            cancel.start()
            cancel.join(0.3)
            assert cancel.is_alive()  # waiting for the claim's lock
        cancel.join(10)
    assert outcome == [False]
    run = store.get_run(rid)
    assert run is not None and run.status == "running" and run.finished_at is None
    assert [e.type for e in store.events_after(rid, 0)] == []


def test_expired_leases_are_taken_over_and_limited(store: SqlRunStore) -> None:
    alive = _new_run(store, owner="a", lease=60)
    dead = _new_run(store, owner="b", lease=-1)
    store.claim_run(dead, "b", -1)
    assert store.expired_runs() == [dead]
    taken = store.take_over(dead, "c", 30, max_attempts=1)
    assert taken is not None and taken.owner_id == "c" and taken.recovery_attempts == 1
    assert store.take_over(alive, "c", 30, max_attempts=1) is None  # lease still valid
    store.release_leases("c")
    assert store.take_over(dead, "d", 30, max_attempts=1) is None  # second resumption: too many
    run = store.get_run(dead)
    assert run is not None and run.status == "failed"
    assert run.error is not None and run.error["type"] == "RecoveryLimitExceeded"


def test_renew_leases_reports_cancel_requests(store: SqlRunStore) -> None:
    rid = _new_run(store, owner="me")
    store.claim_run(rid, "me", 30)
    assert store.renew_leases("me", 30) == []
    store.request_cancel(rid)
    assert store.renew_leases("me", 30) == [rid]


def test_concurrent_writers_never_fail(store: SqlRunStore) -> None:
    rids = [_new_run(store) for _ in range(8)]
    for rid in rids:
        store.claim_run(rid, "me", 30)
    errors: list[BaseException] = []

    def write(rid: str) -> None:
        try:
            for i in range(25):
                store.record_node_event(rid, _completed(str(i), "n", {"i": i}))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(rid,)) for rid in rids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for rid in rids:
        assert [e.seq for e in store.events_after(rid, 0)] == list(range(1, 27))


def test_ping_fails_when_the_database_is_unreachable() -> None:
    bad = SqlRunStore("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=1")
    with pytest.raises(Exception):  # noqa: B017 - any driver error
        bad.ping()
    bad.close()
