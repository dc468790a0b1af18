"""Deleting finished runs: batches delete every row of their runs and nothing else, never an
unfinished run; purges by filter; dry runs; one sweeper at a time; SQLite gives space back."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from service.storage.filters import RunFilter
from service.storage.migrations import upgrade
from service.storage.records import RunStatus
from service.storage.retention import RunRetention, cancellable_runs, vacuum
from service.storage.sql import SqlRunStore
from service.storage.tables import Run, utcnow
from tests.seeding import rows_of, seed_runs

UNFINISHED = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.INTERRUPTED)


def _all_gone(store: SqlRunStore, run_ids: list[str]) -> bool:
    return not any(rows_of(store, run_ids).values())


def _run_count(store: SqlRunStore) -> int:
    with store.read_engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(Run)) or 0)


def test_delete_removes_every_row_of_its_runs_and_nothing_else(store: SqlRunStore) -> None:
    doomed = seed_runs(store, 3, tags=["a", "b"], metadata={"k": "v"}, webhook=True)
    kept = seed_runs(store, 2, tags=["a"], metadata={"k": "v"}, webhook=True)
    before = rows_of(store, kept)
    assert all(before.values()) and all(rows_of(store, doomed).values())

    assert RunRetention(store).delete(doomed) == 3

    assert _all_gone(store, doomed)
    assert rows_of(store, kept) == before


def test_unfinished_runs_are_never_deleted_even_with_an_old_finished_at(
    store: SqlRunStore,
) -> None:
    long_ago = utcnow() - timedelta(days=30)
    unfinished = []
    for status in UNFINISHED:
        unfinished += seed_runs(store, 2, status=status, finished_at=long_ago)
    finished = seed_runs(store, 2, finished_at=long_ago)
    before = rows_of(store, unfinished)
    retention = RunRetention(store)

    assert retention.delete(unfinished) == 0
    assert sorted(retention.expired_finished(utcnow(), 100)) == sorted(finished)
    assert retention.count(RunFilter(statuses=UNFINISHED)) == 0
    assert retention.purge(RunFilter(statuses=UNFINISHED)) == 0
    assert retention.sweep(utcnow()) == 2

    assert _all_gone(store, finished)
    assert rows_of(store, unfinished) == before


def test_a_run_retried_after_it_was_picked_is_left_alone(store: SqlRunStore) -> None:
    [run_id] = seed_runs(store, 1, status=RunStatus.FAILED)
    retention = RunRetention(store)
    assert retention.expired_finished(utcnow(), 10) == [run_id]
    with store.transaction() as conn:  # a retry queues it again before the delete
        conn.execute(update(Run).where(Run.id == run_id).values(status=RunStatus.QUEUED))
    assert retention.delete([run_id]) == 0
    assert rows_of(store, [run_id])["runs"] == 1


def test_paging_with_small_batches_deletes_runs_that_ended_at_the_same_instant(
    store: SqlRunStore,
) -> None:
    # One finished_at for all: the pages go on by id within it.
    same = seed_runs(store, 37, finished_at=utcnow() - timedelta(hours=2))
    retention = RunRetention(store, batch_runs=5, pause_seconds=0)
    assert retention.sweep(utcnow()) == 37
    assert _all_gone(store, same)


class _RecordingRetention(RunRetention):
    """Notes the size of every batch it deletes."""

    sizes: list[int]

    def _delete_batch(self, run_ids: Sequence[str]) -> tuple[int, float]:
        self.sizes = [*getattr(self, "sizes", []), len(run_ids)]
        return super()._delete_batch(run_ids)


def test_slow_batches_make_the_next_ones_smaller(store: SqlRunStore) -> None:
    seed_runs(store, 40)
    retention = _RecordingRetention(store, batch_runs=16, batch_seconds=0.0, pause_seconds=0)
    assert retention.purge(RunFilter()) == 40
    # Every batch took longer than the budget of 0 s: each next one is half the size.
    assert retention.sizes[:6] == [16, 8, 4, 2, 1, 1]
    roomy = _RecordingRetention(store, batch_runs=16, batch_seconds=60, pause_seconds=0)
    seed_runs(store, 40)
    assert roomy.purge(RunFilter()) == 40
    assert roomy.sizes == [16, 16, 8]


def test_expired_finished_are_the_runs_that_ended_before_the_time_at_most_limit(
    store: SqlRunStore,
) -> None:
    now = utcnow()
    expired = seed_runs(store, 2, finished_at=now - timedelta(hours=3))
    expired += seed_runs(store, 1, status=RunStatus.CANCELLED, finished_at=now - timedelta(hours=4))
    seed_runs(store, 1, finished_at=now - timedelta(minutes=1))
    seed_runs(store, 1, status=RunStatus.INTERRUPTED, created_at=now - timedelta(days=1))
    retention = RunRetention(store)
    assert sorted(retention.expired_finished(now - timedelta(hours=1), 10)) == sorted(expired)
    assert len(set(retention.expired_finished(now - timedelta(hours=1), 2)) & set(expired)) == 2


# Each filter of a purge, by the group of runs it matches (given the time of the test).
FILTERS: dict[str, Callable[[datetime], RunFilter]] = {
    "graph": lambda now: RunFilter(graph="billing"),
    "status": lambda now: RunFilter(statuses=[RunStatus.FAILED]),
    "tag": lambda now: RunFilter(tags=["nightly"]),
    "metadata": lambda now: RunFilter(metadata={"team": "ops"}),
    "finished_before": lambda now: RunFilter(finished_before=now - timedelta(days=1)),
    "created_before": lambda now: RunFilter(created_before=now - timedelta(days=7.5)),
}


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_purge_by_each_filter_deletes_exactly_the_matching_finished_runs(
    store: SqlRunStore, name: str
) -> None:
    now = utcnow()
    week_ago = now - timedelta(days=7)
    # Each group differs from the plain runs in one attribute; unfinished runs match all.
    groups = {
        "graph": seed_runs(store, 3, graph="billing"),
        "status": seed_runs(store, 3, status=RunStatus.FAILED),
        "tag": seed_runs(store, 3, tags=["nightly", "x"]),
        "metadata": seed_runs(store, 3, metadata={"team": "ops"}),
        "finished_before": seed_runs(store, 3, finished_at=week_ago),
        "created_before": seed_runs(store, 3, created_at=now - timedelta(days=8), finished_at=now),
    }
    plain = seed_runs(store, 4, finished_at=now - timedelta(minutes=5))
    unfinished = seed_runs(
        store, 2, status=RunStatus.INTERRUPTED, graph="billing", tags=["nightly"]
    ) + seed_runs(store, 2, status=RunStatus.RUNNING, metadata={"team": "ops"})
    run_filter = FILTERS[name](now)
    retention = RunRetention(store, batch_runs=2, pause_seconds=0)
    total = _run_count(store)

    assert retention.count(run_filter) == 3  # the dry run
    assert _run_count(store) == total
    assert retention.purge(run_filter) == 3

    assert _all_gone(store, groups[name])
    kept = [rid for key, ids in groups.items() if key != name for rid in ids]
    assert rows_of(store, kept + plain + unfinished)["runs"] == total - 3 == _run_count(store)


def test_a_dry_run_counts_and_deletes_nothing(store: SqlRunStore) -> None:
    ids = seed_runs(store, 12, webhook=True)
    seed_runs(store, 3, status=RunStatus.QUEUED)
    before = rows_of(store, ids)
    assert RunRetention(store).count(RunFilter()) == 12
    assert rows_of(store, ids) == before


def test_cancellable_runs_are_the_unfinished_matching_ones_in_pages(store: SqlRunStore) -> None:
    queued = seed_runs(store, 3, status=RunStatus.QUEUED, graph="a")
    interrupted = seed_runs(store, 2, status=RunStatus.INTERRUPTED, graph="a")
    seed_runs(store, 2, status=RunStatus.QUEUED, graph="b")
    seed_runs(store, 2, graph="a")  # finished
    pages = list(
        cancellable_runs(store, RunFilter(graph="a"), [RunStatus.QUEUED, RunStatus.INTERRUPTED], 2)
    )
    assert [len(page) for page in pages] == [2, 2, 1]
    found = [rid for page in pages for rid, graph in page if graph == "a"]
    assert sorted(found) == sorted(queued + interrupted)


def test_the_retention_sweep_is_one_process_at_a_time(database_url: str) -> None:
    first, second = SqlRunStore(database_url), SqlRunStore(database_url)
    try:
        mine, theirs = RunRetention(first), RunRetention(second)
        with mine.turn() as taken:
            assert taken
            with theirs.turn() as also:
                assert also is first.sqlite  # Postgres: taken; SQLite: one process anyway
            with second.recovery_turn() as recovering:
                assert recovering  # another lock: recovery goes on during a sweep
        with theirs.turn() as taken:
            assert taken  # released
    finally:
        first.close()
        second.close()


@pytest.mark.postgres
def test_a_turn_held_in_another_thread_excludes_this_one_until_released(
    pg_store: SqlRunStore,
) -> None:
    other = SqlRunStore(pg_store.url, pool_size=1)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with RunRetention(other).turn() as taken:
            assert taken
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(10)
        with RunRetention(pg_store).turn() as taken:
            assert not taken
    finally:
        release.set()
        thread.join(10)
        other.close()
    with RunRetention(pg_store).turn() as taken:
        assert taken


def test_a_new_sqlite_file_gives_space_back_after_many_runs_are_deleted(sqlite_url: str) -> None:
    store = SqlRunStore(sqlite_url, pool_size=2)
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    try:
        upgrade(store.write_engine)
        with store.read_engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2  # incremental
        seed_runs(store, 3000, nodes=3, payload_bytes=400)
        keep = seed_runs(store, 10, status=RunStatus.RUNNING)
        _checkpoint(store)
        full = os.path.getsize(path)
        retention = RunRetention(store, pause_seconds=0)

        assert retention.purge(RunFilter()) == 3000
        freed = retention.reclaim_space()

        assert freed > 0
        assert os.path.getsize(path) < full / 3, (full, os.path.getsize(path))
        assert rows_of(store, keep)["runs"] == 10
        assert retention.reclaim_space() == 0  # nothing left to give back
    finally:
        store.close()


def test_vacuum_turns_incremental_auto_vacuum_on_for_an_older_sqlite_file(
    sqlite_url: str,
) -> None:
    import sqlite3

    path = sqlite_url.removeprefix("sqlite:///")
    sqlite3.connect(path).execute("CREATE TABLE made_before (x)").connection.close()
    store = SqlRunStore(sqlite_url, pool_size=2)
    try:
        upgrade(store.write_engine)
        seed_runs(store, 200)
        retention = RunRetention(store)
        assert retention.purge(RunFilter()) == 200
        assert retention.reclaim_space() == 0  # no incremental vacuum on this file yet
        vacuum(store.write_engine)
        with store.read_engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA freelist_count").scalar() == 0
            assert conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2
        seed_runs(store, 200)
        assert retention.purge(RunFilter()) == 200
        assert retention.reclaim_space() > 0  # the server's connections see the new mode
    finally:
        store.close()


def test_vacuum_runs_on_both_databases(store: SqlRunStore) -> None:
    seed_runs(store, 20)
    assert RunRetention(store).purge(RunFilter()) == 20
    vacuum(store.write_engine)
    assert RunRetention(store).count(RunFilter()) == 0


def _checkpoint(store: SqlRunStore) -> None:
    """Copy the WAL into the database file, so that its size is the data's."""
    with store.write_engine.connect() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
