"""Claims of runs queued for any worker: free slots only, oldest first, locked rows skipped."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from sqlalchemy import text

from service.storage import queries as q
from service.storage.records import RunStatus
from service.storage.sql import SqlRunStore
from service.storage.tables import new_run_values


def _queue(store: SqlRunStore, owner_id: str | None = None) -> str:
    values: dict[str, Any] = new_run_values(
        run_id=str(uuid.uuid4()),
        graph="g",
        input={},
        max_concurrent=None,
        idempotency_key=None,
        owner_id=owner_id,
        lease_seconds=30,
    )
    with store.write_engine.begin() as conn:
        conn.execute(q.INSERT_RUN, values)
    time.sleep(0.002)  # distinct created_at: "oldest first" is observable
    return str(values["id"])


def test_claims_at_most_the_free_slots_oldest_first_with_run_started(store: SqlRunStore) -> None:
    first, second, third = (_queue(store) for _ in range(3))
    claimed = store.claim_next("w1", 30, 2)
    assert [run.id for run in claimed] == [first, second]
    assert all(run.status == RunStatus.RUNNING and run.owner_id == "w1" for run in claimed)
    assert [e.type for e in store.events_after(first, 0)] == ["run_started"]
    assert [run.id for run in store.claim_next("w2", 30, 5)] == [third]
    assert store.claim_next("w2", 30, 5) == []


def test_runs_their_creator_holds_are_not_claimed_until_its_lease_expires(
    store: SqlRunStore,
) -> None:
    held = _queue(store, owner_id="creator")
    assert store.claim_next("w1", 30, 5) == []
    with store.write_engine.begin() as conn:
        conn.execute(
            text("UPDATE runs SET lease_expires_at = :past WHERE id = :id"),
            {"past": "2000-01-01 00:00:00.000000", "id": held},
        )
    assert [run.id for run in store.claim_next("w1", 30, 5)] == [held]


def test_runs_queued_for_any_worker_are_not_swept_as_expired(store: SqlRunStore) -> None:
    _queue(store)
    assert store.expired_runs(exclude_owner="w1") == []


@pytest.mark.postgres
def test_a_row_another_claimer_has_locked_is_skipped_not_waited_for(
    pg_store: SqlRunStore,
) -> None:
    store = pg_store
    locked, free = _queue(store), _queue(store)
    with store.write_engine.connect() as other:
        other.execute(text("SELECT id FROM runs WHERE id = :id FOR UPDATE"), {"id": locked})
        started = time.monotonic()
        assert [run.id for run in store.claim_next("w1", 30, 5)] == [free]
        assert time.monotonic() - started < 2
        other.rollback()
    assert [run.id for run in store.claim_next("w2", 30, 5)] == [locked]


def test_the_recovery_sweep_is_one_process_at_a_time(database_url: str) -> None:
    first, second = SqlRunStore(database_url), SqlRunStore(database_url)
    try:
        with first.recovery_turn() as mine:
            assert mine
            with second.recovery_turn() as theirs:
                assert theirs is first.sqlite  # Postgres: taken; SQLite: one process anyway
        with second.recovery_turn() as theirs:
            assert theirs  # released
    finally:
        first.close()
        second.close()
