"""Deleting finished runs (one, a purge by filter, the retention sweep) and giving SQLite's
freed space back; the runs a bulk cancel is about.

Only finished runs (``TERMINAL``) are ever deleted, never a queued, running or interrupted one.
Deleting never stalls the live server:

1. runs are picked a page at a time, by a read that takes no lock;
2. each page is deleted in its own short transaction, by one statement that deletes those of
   its runs still finished (a run retried or resumed since it was picked is left alone); their
   node runs, events, webhook deliveries (a pending one goes too), tags and metadata values go
   with them through their ``ON DELETE CASCADE`` keys, which Postgres enforces, and SQLite on
   every connection ``service.storage.engine`` opens. One statement, not one per table: on
   SQLite the write lock is then held for the database's work only, not also for this
   thread's turns at the GIL between statements;
3. each batch is fitted to a time (``PACE``): one that took longer makes the next one
   smaller; and between batches the deleter pauses, so that it works only its share of the
   time and the API's own writes go on.

On SQLite the pages freed go back to the file system with ``reclaim_space``, on databases
created with ``auto_vacuum=INCREMENTAL`` (``service.storage.engine``; older files get it from
``vacuum``, the ``graphflow vacuum`` command). On Postgres autovacuum makes them reusable.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Engine, String, delete, func, select, type_coerce

from service.storage.engine import advisory_turn
from service.storage.filters import RunFilter
from service.storage.records import TERMINAL, RunStatus
from service.storage.sql import SqlRunStore
from service.storage.tables import Run

__all__ = ["RunRetention", "cancellable_runs", "vacuum"]

BATCH_RUNS = 500  # runs per transaction, at most
FIRST_BATCH_RUNS = 50  # the first batch's size: each next one is fitted to how long one took
PAUSE_SECONDS = 0.01  # between batches, at least
# Per database: how long a batch should take, and the share of the time the deleter works
# (it pauses for the rest). SQLite has one write lock, which every write of the API waits for
# while a batch holds it: short batches. On Postgres a batch locks only its own rows; what the
# API shares with it is the disk (each commit flushes the deletions' WAL) and the CPUs: longer
# batches, but not much (50 ms ones made the API's p95 more than twice its p95 without a
# purge), and a smaller share. ``bench/purge_bench.py`` measures the API meanwhile.
PACE = {"sqlite": (0.003, 0.25), "postgresql": (0.01, 0.15)}
VACUUM_PAGES = 256  # SQLite pages given back per transaction (1 MiB at the default page size)
# The session advisory lock of the retention sweep ("gfreten"): one process sweeps at a time.
_RETENTION_LOCK = 0x6766_7265_7465_6E

# "The run has finished", on an expression that no index serves, so that the planner never
# picks the status index for it: SQLite, which keeps no statistics, would otherwise walk it
# through every finished run to delete a batch of ten runs by id.
_FINISHED = type_coerce(Run.status, String()).concat("").in_([s.value for s in TERMINAL])


class RunRetention:
    """Deletes the finished runs of ``store``, in short transactions (see the module)."""

    def __init__(
        self,
        store: SqlRunStore,
        *,
        batch_runs: int = BATCH_RUNS,
        batch_seconds: float | None = None,
        work_share: float | None = None,
        pause_seconds: float = PAUSE_SECONDS,
    ) -> None:
        """``batch_seconds`` and ``work_share`` default to the database's ``PACE``."""
        default_seconds, default_share = PACE.get(
            store.write_engine.dialect.name, PACE["postgresql"]
        )
        self.store = store
        self.batch_runs = batch_runs
        self.batch_seconds = default_seconds if batch_seconds is None else batch_seconds
        self.work_share = default_share if work_share is None else work_share
        self.pause_seconds = pause_seconds

    def turn(self) -> contextlib.AbstractContextManager[bool]:
        """Whether this process may sweep now: one process at a time on Postgres."""
        return advisory_turn(self.store.write_engine, _RETENTION_LOCK)

    def delete(self, run_ids: Sequence[str]) -> int:
        """Delete those of ``run_ids`` that are finished, with all their rows, in one
        transaction; return how many were deleted."""
        return self._delete_batch(run_ids)[0]

    def _delete_batch(self, run_ids: Sequence[str]) -> tuple[int, float]:
        """``delete``, and how long its transaction held the write lock (SQLite) or the rows
        (Postgres): what the next batch is fitted to."""
        if not run_ids:
            return 0, 0.0
        ids = list(run_ids)
        with self.store.transaction() as conn:
            began = time.monotonic()
            if not self.store.sqlite:
                # Locked in id order first: two deleters never wait on each other in a cycle.
                conn.execute(
                    select(Run.id).where(Run.id.in_(ids)).order_by(Run.id).with_for_update()
                )
            # One statement: the children go with their runs by their ON DELETE CASCADE keys.
            deleted = conn.execute(delete(Run).where(Run.id.in_(ids), _FINISHED)).rowcount
        return deleted, time.monotonic() - began

    def count(self, run_filter: RunFilter) -> int:
        """How many finished runs match ``run_filter`` (what ``purge`` would delete now)."""
        stmt = select(func.count()).select_from(Run).where(run_filter.condition(), _FINISHED)
        with self.store.read_engine.connect() as conn:
            return int(conn.scalar(stmt) or 0)

    def purge(self, run_filter: RunFilter, stop: threading.Event | None = None) -> int:
        """Delete the finished runs matching ``run_filter`` (its statuses other than finished
        ones match nothing), a page at a time, until none is left or ``stop`` is set; return
        how many were deleted."""
        return self._delete_pages(run_filter.condition(), stop)

    def expired_finished(self, before: datetime, limit: int) -> list[str]:
        """Ids of up to ``limit`` runs that finished before ``before``, in no set order."""
        return self._page(Run.finished_at < before, limit)

    def sweep(self, before: datetime, stop: threading.Event | None = None) -> int:
        """Delete every run that finished before ``before`` (the retention period's start),
        a page at a time, until none is left or ``stop`` is set; return how many."""
        return self._delete_pages(Run.finished_at < before, stop)

    def reclaim_space(self, stop: threading.Event | None = None) -> int:
        """On SQLite, give the file's free pages back to the file system, ``VACUUM_PAGES`` per
        transaction; return how many. 0 on Postgres, and on a SQLite file created without
        incremental auto-vacuum (``vacuum`` converts it)."""
        if not self.store.sqlite:
            return 0
        freed = 0
        while stop is None or not stop.is_set():
            with self.store.transaction() as conn:
                # First a read of the file's header: the mode a connection reports is the one
                # it last read, and ``vacuum`` in another connection may have changed it.
                free = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar() or 0)
                incremental = conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2
                chunk = min(free, VACUUM_PAGES) if incremental else 0
                # One page per statement: Python's sqlite3 steps a statement without result
                # columns only once, and each step of incremental_vacuum frees one page.
                for _ in range(chunk):
                    conn.exec_driver_sql("PRAGMA incremental_vacuum(1)")
            freed += chunk
            if chunk < VACUUM_PAGES or _pause(stop, self.pause_seconds):
                break
        self._checkpoint()  # in WAL mode the file shrinks when the WAL is copied back
        return freed

    def _checkpoint(self) -> None:
        """On SQLite, copy the WAL back into the file now, in this thread, with a passive
        checkpoint (it waits for no one): left to SQLite, the WAL's growth from deletions
        would have the next commit past 1,000 pages do it, most often the journal writer's,
        which the API's requests wait on."""
        if not self.store.sqlite:
            return
        with self.store.write_engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert driver is not None
            driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    # -- pages ----------------------------------------------------------------------------
    def _page(self, condition: ColumnElement[bool], limit: int) -> list[str]:
        """Ids of up to ``limit`` finished runs matching ``condition``. A read: it takes no
        write lock.

        No order and no cursor: the runs of a page are gone before the next page is read, so
        each page is the first matching runs left, found through whichever index suits the
        condition. An order would have the database sort every matching run for every page
        whenever it picks another index than the order's (SQLite does, without statistics).
        """
        stmt = select(Run.id).where(condition, _FINISHED).limit(limit)
        with self.store.read_engine.connect() as conn:
            return list(conn.scalars(stmt))

    def _delete_pages(self, condition: ColumnElement[bool], stop: threading.Event | None) -> int:
        """Delete the finished runs matching ``condition``, batch after batch (see the
        module). The next page is read, and the WAL copied back, during the pause."""
        deleted, size, due = 0, min(self.batch_runs, FIRST_BATCH_RUNS), 0.0
        previous: list[str] = []
        page = self._page(condition, size)
        while page and not _pause(stop, due - time.monotonic()):
            removed, took = self._delete_batch(page)
            rest = took * (1 - self.work_share) / self.work_share
            due = time.monotonic() + max(self.pause_seconds, rest)
            deleted += removed
            # A page of runs that all changed under us is not read again; the same page twice
            # would mean they keep matching without being deletable: stop rather than spin.
            if len(page) < size or (removed == 0 and page == previous):
                break
            previous = page
            if took > self.batch_seconds:
                size = max(1, size // 2)
            elif took < self.batch_seconds / 2:
                size = min(self.batch_runs, size * 2)
            self._checkpoint()
            page = self._page(condition, size)
        self._checkpoint()
        return deleted


def cancellable_runs(
    store: SqlRunStore, run_filter: RunFilter, statuses: Sequence[RunStatus], page: int = 500
) -> Iterator[list[tuple[str, str]]]:
    """(id, graph) of the runs matching ``run_filter`` whose status is one of ``statuses``,
    in pages of ``page`` by id: what a bulk cancel goes through."""
    after = ""
    while True:
        stmt = (
            select(Run.id, Run.graph)
            .where(run_filter.condition(), Run.status.in_(list(statuses)), Run.id > after)
            .order_by(Run.id)
            .limit(page)
        )
        with store.read_engine.connect() as conn:
            rows = [(rid, graph) for rid, graph in conn.execute(stmt)]
        if rows:
            yield rows
        if len(rows) < page:
            return
        after = rows[-1][0]


def vacuum(engine: Engine) -> None:
    """Rebuild the database to give free space back: ``VACUUM`` on SQLite (which also turns
    on incremental auto-vacuum for a file created before it), ``VACUUM (ANALYZE)`` on
    Postgres. Both lock out writers while they run: for a maintenance window."""
    if engine.dialect.name != "sqlite":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM (ANALYZE)")
        return
    with engine.connect() as conn:
        # Not in a transaction, which SQLite engines begin on their own: on the driver's
        # connection, which is in autocommit (see ``service.storage.engine``).
        driver = conn.connection.driver_connection
        assert driver is not None
        # The mode set when the connection opened does not last until here on a file with
        # tables: set it again, for the VACUUM to apply.
        driver.execute("PRAGMA auto_vacuum=INCREMENTAL")
        driver.execute("VACUUM")


def _pause(stop: threading.Event | None, seconds: float) -> bool:
    """Sleep ``seconds`` (none if not positive); True when ``stop`` is set."""
    if stop is None:
        time.sleep(max(0.0, seconds))
        return False
    return stop.wait(max(0.0, seconds))
