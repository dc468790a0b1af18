"""The retention sweeper: which processes run it, what a round deletes, one sweeper at a time,
and a thread that sweeps from the start and stops."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from service.runtime.sweeper import RetentionSweeper, sweeper_for
from service.settings import Role
from service.storage.records import RunStatus
from service.storage.retention import RunRetention
from service.storage.sql import SqlRunStore
from service.storage.tables import utcnow
from tests.conftest import make_settings
from tests.seeding import rows_of, seed_runs

HOUR = 3600.0


def test_only_processes_that_execute_runs_with_a_retention_period_sweep(
    store: SqlRunStore,
) -> None:
    pg = "postgresql+psycopg://postgres@127.0.0.1:5432/unused"
    assert sweeper_for(store, make_settings(store.url)) is None  # kept forever by default
    api = make_settings(pg, role=Role.API, retention_seconds=HOUR)
    assert sweeper_for(store, api) is None
    sweeper = sweeper_for(store, make_settings(store.url, retention_seconds=HOUR))
    assert isinstance(sweeper, RetentionSweeper) and sweeper.retention_seconds == HOUR


def test_a_round_deletes_the_runs_that_finished_before_the_period_only(
    store: SqlRunStore,
) -> None:
    long_ago = utcnow() - timedelta(hours=2)
    expired = seed_runs(store, 3, finished_at=long_ago, webhook=True)
    expired += seed_runs(store, 2, status=RunStatus.TIMED_OUT, finished_at=long_ago)
    recent = seed_runs(store, 2, finished_at=utcnow() - timedelta(minutes=5))
    waiting = seed_runs(store, 2, status=RunStatus.INTERRUPTED, created_at=long_ago)
    active = seed_runs(store, 2, status=RunStatus.RUNNING, created_at=long_ago)
    active += seed_runs(store, 2, status=RunStatus.QUEUED, created_at=long_ago)
    kept = recent + waiting + active
    before = rows_of(store, kept)

    sweeper = RetentionSweeper(RunRetention(store), HOUR, 60)
    assert sweeper.sweep() == 5
    assert sweeper.sweep() == 0

    assert not any(rows_of(store, expired).values())
    assert rows_of(store, kept) == before


@pytest.mark.postgres
def test_a_round_is_skipped_while_another_process_sweeps(pg_store: SqlRunStore) -> None:
    expired = seed_runs(pg_store, 3, finished_at=utcnow() - timedelta(hours=2))
    other = SqlRunStore(pg_store.url, pool_size=1)
    try:
        with RunRetention(other).turn() as theirs:
            assert theirs
            assert RetentionSweeper(RunRetention(pg_store), HOUR, 60).sweep() == 0
            assert rows_of(pg_store, expired)["runs"] == 3
    finally:
        other.close()
    assert RetentionSweeper(RunRetention(pg_store), HOUR, 60).sweep() == 3


def test_the_thread_sweeps_at_once_and_stops(store: SqlRunStore) -> None:
    expired = seed_runs(store, 4, finished_at=utcnow() - timedelta(hours=2))
    sweeper = RetentionSweeper(RunRetention(store), HOUR, 0.05)
    sweeper.start()
    try:
        deadline = time.monotonic() + 10
        while rows_of(store, expired)["runs"]:
            assert time.monotonic() < deadline, "the sweeper deleted nothing"
            time.sleep(0.02)
        later = seed_runs(store, 2, finished_at=utcnow() - timedelta(hours=2))
        while rows_of(store, later)["runs"]:  # the next rounds go on
            assert time.monotonic() < deadline, "the sweeper swept only once"
            time.sleep(0.02)
    finally:
        sweeper.stop()
    assert sweeper._thread is not None and not sweeper._thread.is_alive()
    with pytest.raises(RuntimeError, match="started already"):
        sweeper.start()
