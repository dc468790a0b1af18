"""The journal writer: many runs' writes in one transaction, fenced per run, isolated on error."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, update

from service.errors import TooManyActiveRunsError
from service.runtime.journal import JournalWriter, RunJournal
from service.storage.migrations import upgrade
from service.storage.records import (
    NodeEventWrite,
    NodeRunStatus,
    RunClaim,
    RunStatus,
)
from service.storage.sql import SqlRunStore
from service.storage.tables import Run, new_run_values, utcnow
from tests.conftest import fresh_postgres_database


class Wakes:
    """Records what the writer wakes after each commit."""

    def __init__(self) -> None:
        self.changed: list[set[str]] = []
        self.ended: list[set[str]] = []
        self.events: list[dict[str, list[Any]]] = []

    def __call__(self, changed: Any, ended: Any, events: Any) -> None:
        self.changed.append(set(changed))
        self.ended.append(set(ended))
        self.events.append(dict(events))


@pytest.fixture
def commits(store: SqlRunStore) -> Iterator[list[int]]:
    """Counts the write engine's commits (one per journal batch)."""
    seen: list[int] = []

    def on_commit(_conn: Any) -> None:
        seen.append(1)

    event.listen(store.write_engine, "commit", on_commit)
    yield seen
    event.remove(store.write_engine, "commit", on_commit)


def _values(key: str | None = None) -> dict[str, Any]:
    return new_run_values(
        run_id=str(uuid.uuid4()),
        graph="g",
        input={"x": 1},
        max_concurrent=None,
        idempotency_key=key,
        owner_id="me",
        lease_seconds=30,
    )


def _node_event(node: str, kind: str = "started") -> NodeEventWrite:
    now = utcnow()
    done = kind == "completed"
    return NodeEventWrite(
        type=f"node_{kind}",
        activation_id="0",
        node=node,
        status=NodeRunStatus.SUCCEEDED if done else NodeRunStatus.RUNNING,
        attempt=1,
        parents=[],
        started_at=now,
        finished_at=now if done else None,
        duration_ms=0.5 if done else None,
        update={"x": 2} if done else None,
        goto=[] if done else None,
        error=None,
        data={"node": node, "node_run_id": "0"},
    )


def _started_run(store: SqlRunStore, writer: JournalWriter) -> RunJournal:
    values = _values()
    assert writer.create(values).result(5) is True
    run = writer.claim(RunClaim(values["id"], "me", 30)).result(5)
    assert run is not None and run.status == RunStatus.RUNNING
    return RunJournal(run.id, "me", run.started_at, run.last_seq + 1)


def test_events_of_many_runs_queued_together_are_stored_in_one_transaction(
    store: SqlRunStore, commits: list[int]
) -> None:
    wakes = Wakes()
    writer = JournalWriter(store, wakes)
    writer.start()
    heads = [_started_run(store, writer) for _ in range(5)]
    writer.stop()
    commits.clear()
    # Everything is queued before the writer runs: one batch, one commit.
    for head in heads:
        writer.append(head, _node_event("a"))
        writer.append(head, _node_event("a", "completed"))
        writer.end(head, RunStatus.SUCCEEDED, output={"x": 2})
    writer.start()
    assert all(head.ended.result(5) is True for head in heads)
    writer.stop()
    assert len(commits) == 1
    assert wakes.ended[-1] == {head.run_id for head in heads}
    # Streams are handed exactly the events stored, in seq order.
    assert [seq for seq, _, _ in wakes.events[-1][heads[0].run_id]] == [2, 3, 4]
    for head in heads:
        types = [e.type for e in store.events_after(head.run_id, 0)]
        assert types == ["run_started", "node_started", "node_completed", "run_succeeded"]
        assert [e.seq for e in store.events_after(head.run_id, 0)] == [1, 2, 3, 4]
        run = store.get_run(head.run_id)
        assert run is not None and run.status == RunStatus.SUCCEEDED and run.last_seq == 4


def test_a_run_taken_over_in_the_meantime_is_reported_lost_and_its_events_are_dropped(
    store: SqlRunStore,
) -> None:
    writer = JournalWriter(store, Wakes())
    writer.start()
    mine, stolen = _started_run(store, writer), _started_run(store, writer)
    writer.stop()
    with store.write_engine.begin() as conn:
        conn.execute(update(Run).where(Run.id == stolen.run_id).values(owner_id="other"))
    lost = threading.Event()
    stolen.on_lost = lost.set
    for head in (mine, stolen):
        writer.append(head, _node_event("a"))
        writer.end(head, RunStatus.SUCCEEDED, output={})
    writer.start()
    assert mine.ended.result(5) is True
    assert stolen.ended.result(5) is False
    writer.stop()
    assert lost.is_set() and stolen.lost
    assert [e.type for e in store.events_after(stolen.run_id, 0)] == ["run_started"]
    assert store.node_runs(stolen.run_id) == []
    run = store.get_run(stolen.run_id)
    assert run is not None and run.status == RunStatus.RUNNING and run.owner_id == "other"
    assert [e.type for e in store.events_after(mine.run_id, 0)][-1] == "run_succeeded"


def test_a_taken_idempotency_key_creates_nothing_and_says_so(store: SqlRunStore) -> None:
    writer = JournalWriter(store, Wakes())
    writer.start()
    first, second = _values("key-1"), _values("key-1")
    assert writer.create(first).result(5) is True
    assert writer.create(second).result(5) is False
    writer.stop()
    assert store.get_run(second["id"]) is None
    existing = store.get_run_by_idempotency_key("key-1")
    assert existing is not None and existing.id == first["id"]


def test_creates_beyond_the_active_run_cap_are_refused_in_order_within_one_batch(
    store: SqlRunStore, commits: list[int]
) -> None:
    writer = JournalWriter(store, Wakes(), max_active_runs=3)
    writer.start()
    assert writer.create(_values()).result(5) is True  # one active run already
    writer.flush(5)
    writer.stop()
    before = len(commits)
    writer = JournalWriter(store, Wakes(), max_active_runs=3)
    queued = [_values() for _ in range(4)]
    futures = [writer.create(values) for values in queued]  # queued before the writer starts
    writer.start()
    assert [f.exception(5) is None for f in futures] == [True, True, False, False]
    refused = futures[2].exception()
    assert isinstance(refused, TooManyActiveRunsError) and "limit of 3 " in str(refused)
    writer.stop()
    assert len(commits) == before + 1  # counted and stored in one transaction
    assert [store.get_run(v["id"]) is not None for v in queued] == [True, True, False, False]


def test_claiming_a_run_that_is_not_queued_gives_none(store: SqlRunStore) -> None:
    writer = JournalWriter(store, Wakes())
    writer.start()
    head = _started_run(store, writer)
    assert writer.claim(RunClaim(head.run_id, "me", 30)).result(5) is None
    writer.stop()


@pytest.fixture
def postgres_store() -> Iterator[SqlRunStore]:
    """A migrated store on a fresh Postgres database (Postgres refuses NUL in text)."""
    with fresh_postgres_database() as url:
        store = SqlRunStore(url, pool_size=2)
        upgrade(store.write_engine)
        yield store
        store.close()


@pytest.mark.postgres
def test_an_event_the_database_refuses_fails_its_run_alone_and_names_the_node(
    postgres_store: SqlRunStore,
) -> None:
    store = postgres_store
    writer = JournalWriter(store, Wakes())
    writer.start()
    good, bad = _started_run(store, writer), _started_run(store, writer)
    writer.stop()
    failures: list[BaseException] = []
    bad.on_failed = failures.append
    writer.append(good, _node_event("fine"))
    writer.append(bad, _node_event("ok"))
    writer.append(bad, _node_event("bad\x00name"))
    writer.append(bad, _node_event("after"))
    writer.append(good, _node_event("fine", "completed"))
    writer.start()
    writer.flush(5)
    writer.stop()
    assert len(failures) == 1 and bad.failed_node == "bad\x00name"
    # The run's events before the refused one are kept; nothing after it is written.
    assert [e.type for e in store.events_after(bad.run_id, 0)] == ["run_started", "node_started"]
    assert [e.data["node"] for e in store.events_after(bad.run_id, 1)] == ["ok"]
    good_types = [e.type for e in store.events_after(good.run_id, 0)]
    assert good_types == ["run_started", "node_started", "node_completed"]
