"""The run store on SQL: ``SqlRunStore`` implements the seam ``service.storage.base.RunStore``
on SQLAlchemy, for SQLite and Postgres; its statements live in ``service.storage.queries``.

Writes are short transactions; on SQLite they are additionally serialized in-process
with a lock (and across processes by ``BEGIN IMMEDIATE``), so they never see "database is locked".
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, Engine, Select, Table, text, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.storage import claims, continuations, journal_batch, leases, notices, run_events
from service.storage import queries as q
from service.storage.bulk import BulkInsert
from service.storage.continuations import Owner
from service.storage.engine import advisory_turn, is_sqlite, make_engine
from service.storage.filters import RunFilter
from service.storage.outbox import WebhookOutbox, enqueue_deliveries
from service.storage.records import (
    ACTIVE,
    JournalBatch,
    JournalResult,
    LeaseRenewal,
    NodeEventWrite,
    RunError,
    RunStatus,
)
from service.storage.search import driving_search, insert_search_rows
from service.storage.tables import (
    EVENT_COLUMNS,
    NODE_COLUMNS,
    Base,
    NodeRun,
    Run,
    RunEvent,
    new_run_values,
    node_run_values,
    utcnow,
)


class SqlRunStore:
    """``RunStore`` on SQLAlchemy (SQLite or Postgres)."""

    def __init__(self, url: str, *, pool_size: int = 10, announce_as: str | None = None) -> None:
        """``announce_as``: on Postgres, tell other processes of every change this store
        commits (``service.storage.notices``), as coming from this process."""
        self.url = url
        self.sqlite = is_sqlite(url)
        self._origin = None if self.sqlite else announce_as
        self.write_engine: Engine = make_engine(url, write=True, pool_size=pool_size)
        self.read_engine: Engine = (
            make_engine(url, write=False, pool_size=pool_size) if self.sqlite else self.write_engine
        )
        self._write_session = sessionmaker(self.write_engine, expire_on_commit=False)
        self._read_session = sessionmaker(self.read_engine, expire_on_commit=False)
        self._upsert_node = q.node_upsert(self.write_engine.dialect.name)
        self._insert_run = q.insert_run_unless_key_used(self.write_engine.dialect.name)
        # The journal's two statements of one row per event, straight to the driver.
        dialect = self.write_engine.dialect
        self._bulk_events = BulkInsert(q.INSERT_EVENT, _table(RunEvent), EVENT_COLUMNS, dialect)
        self._bulk_nodes = BulkInsert(self._upsert_node, _table(NodeRun), NODE_COLUMNS, dialect)
        self._ping_lock = threading.Lock()
        self._lock: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if self.sqlite else contextlib.nullcontext()
        )

    # -- plumbing -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        with self._lock, self._write_session.begin() as session:
            yield session

    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        with self._read_session() as session:
            yield session

    def ping(self, timeout: float | None = None) -> None:
        """Run ``SELECT 1``; raise the driver's error when the database does not answer.

        With ``timeout`` (seconds), Postgres aborts the statement past it. A connection that
        hangs (say, a server that accepts and never answers) cannot be bounded from here, so
        only one ping runs at a time: while one hangs, the next raises ``TimeoutError`` at once.
        """
        if not self._ping_lock.acquire(blocking=False):
            raise TimeoutError("the previous database ping has not returned yet")
        try:
            with self.read_engine.connect() as conn:
                if timeout is not None and not self.sqlite:
                    ms = max(1, int(timeout * 1000))
                    conn.execute(text(f"SET LOCAL statement_timeout = {ms}"))
                conn.execute(text("SELECT 1"))
        finally:
            self._ping_lock.release()

    def close(self) -> None:
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A Core connection in a write transaction (serialized with the store's other writes
        on SQLite): the hot path skips the ORM's overhead."""
        with self._lock, self.write_engine.begin() as conn:
            yield conn

    def _announce(
        self, conn: Connection, changed: Iterable[str], ended: Iterable[str] = ()
    ) -> None:
        """``run_events.announce`` as this store's process."""
        run_events.announce(conn, self._origin, changed, ended)

    # -- runs -----------------------------------------------------------------------------
    def create_run(
        self,
        *,
        run_id: str,
        graph: str,
        input: dict[str, Any],
        max_concurrent: int | None,
        idempotency_key: str | None,
        owner_id: str,
        lease_seconds: float,
        run_metadata: dict[str, Any] | None = None,
        tags: list[str] | None = None,
    ) -> tuple[Run, bool]:
        """Store a queued run owned by ``owner_id``, with the search rows of its tags and
        metadata; ``(run, True)``, or the run an ``idempotency_key`` made before and False.

        Raises:
            IntegrityError: the run id is taken (or the key, and its run is gone).
        """
        values = new_run_values(
            run_id=run_id,
            graph=graph,
            input=input,
            max_concurrent=max_concurrent,
            idempotency_key=idempotency_key,
            owner_id=owner_id,
            lease_seconds=lease_seconds,
            run_metadata=run_metadata,
            tags=tags,
        )
        try:
            with self.transaction() as conn:
                conn.execute(q.INSERT_RUN, values)
                insert_search_rows(conn, [values])
        except IntegrityError:
            if idempotency_key is None:
                raise
            existing = self.get_run_by_idempotency_key(idempotency_key)
            if existing is None:  # pragma: no cover - the winner rolled back; extremely rare
                raise
            return existing, False
        return Run(**values), True

    def get_run(self, run_id: str) -> Run | None:
        with self._read() as session:
            return session.get(Run, run_id)

    def get_run_by_idempotency_key(self, key: str) -> Run | None:
        with self._read() as session:
            return session.scalars(q.run_by_idempotency_key(key)).first()

    def node_runs(self, run_id: str) -> list[NodeRun]:
        with self._read() as session:
            return list(session.scalars(q.node_runs(run_id)))

    def count_runs_by_status(self) -> dict[RunStatus, int]:
        """How many runs are queued and running now, across processes (0 for none)."""
        counts = dict.fromkeys(ACTIVE, 0)
        with self._read() as session:
            for status, count in session.execute(q.COUNT_ACTIVE_RUNS_BY_STATUS):
                counts[RunStatus(status)] = int(count)
        return counts

    def list_runs(
        self, where: RunFilter, *, limit: int, before: tuple[datetime, str] | None = None
    ) -> list[Run]:
        """Up to ``limit`` of the runs ``where`` selects, newest first, after the keyset
        position ``before`` (``(created_at, id)`` of the last run of the previous page)."""
        with self._read() as session:
            return list(session.scalars(self.list_runs_statement(session, where, limit, before)))

    def list_runs_statement(
        self,
        session: Session | Connection,
        where: RunFilter,
        limit: int,
        before: tuple[datetime, str] | None = None,
    ) -> Select[Run]:
        """The statement ``list_runs`` runs (for ``EXPLAIN``); on SQLite, it reads through
        ``session`` which tag or metadata value to list from (``search.driving_search``)."""
        driving = driving_search(session, where) if self.sqlite else None
        return q.list_runs(where, limit=limit, before=before, driving=driving)

    # -- execution ------------------------------------------------------------------------
    def claim_run(self, run_id: str, owner_id: str, lease_seconds: float) -> Run | None:
        """queued -> running (emitting run_started), or keep a running run we own (resume).

        None when the run is gone, ended, or running under another owner. The row is locked
        while deciding, so two processes never both start one run.
        """
        now = utcnow()
        lease = now + timedelta(seconds=lease_seconds)
        with self.transaction() as conn:
            # The common case, a queued run, in two statements and no read.
            for started, event in claims.claim_queued(conn, [run_id], owner_id, lease_seconds, now):
                conn.execute(q.INSERT_EVENT, event)
                return started
        with self._write() as session:  # not queued: perhaps ours to resume
            run = session.get(Run, run_id, with_for_update=True)
            if run is None:
                return None
            if run.status == RunStatus.RUNNING and run.owner_id == owner_id:
                run.lease_expires_at = lease
                return run
            return None

    def record_graph_version(self, run_id: str, owner_id: str, version: str) -> None:
        """Record ``version`` as the graph version ``run_id`` starts on, while ``owner_id``
        holds it: the starting process loaded another version than the creating one (an API
        and a worker during a rolling deploy)."""
        with self.transaction() as conn:
            conn.execute(
                update(Run)
                .where(Run.id == run_id, Run.owner_id == owner_id)
                .values(graph_version=version)
            )

    def record_node_event(
        self, run_id: str, write: NodeEventWrite, owner_id: str | None = None
    ) -> int:
        """Persist a node event (row change + stream event) in one transaction; return its seq.

        Raises:
            LeaseLostError: ``owner_id`` is given and another process owns the run now.
        """
        with self.transaction() as conn:
            seq = run_events.add_event(conn, run_id, write.type, write.data, owner_id)
            conn.execute(self._upsert_node, node_run_values(run_id, seq, write))
            return seq

    def write_journal(self, batch: JournalBatch) -> JournalResult:
        """``journal_batch.write`` in a transaction of its own."""
        now = utcnow()
        with self.transaction() as conn:
            return journal_batch.write(
                conn,
                batch,
                now,
                insert_run=self._insert_run,
                bulk_events=self._bulk_events,
                bulk_nodes=self._bulk_nodes,
                origin=self._origin,
            )

    def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        output: dict[str, Any] | None,
        error: RunError | None,
        owner_id: str | None = None,
    ) -> int | None:
        """Move an active run to a terminal status, with its event; None if it already ended.

        With ``owner_id``, only that owner may finish it (None too when another process owns it).
        """
        owned = Run.owner_id == owner_id if owner_id is not None else true()
        with self.transaction() as conn:
            return self._finish(
                conn, run_id, RunStatus(status), output, error, Run.status.in_(ACTIVE), owned
            )

    def cancel_queued(self, run_id: str) -> bool:
        """Cancel a run that no process executes (queued or interrupted); False when it is
        not (any more).

        Check and write are one conditional ``UPDATE ... WHERE status IN (...)``: a run
        claimed in between is running, so it is left alone rather than marked cancelled while
        its worker goes on (cancelling a running run is ``request_cancel``).
        """
        idle = Run.status.in_((RunStatus.QUEUED, RunStatus.INTERRUPTED))
        with self.transaction() as conn:
            seq = self._finish(conn, run_id, RunStatus.CANCELLED, None, None, idle)
        return seq is not None

    def time_out_overdue(self, run_ids: Sequence[str] | None = None, limit: int = 500) -> list[str]:
        """End ``timed_out`` the runs past a deadline that no live process executes
        (``queries.overdue``: queued past their queue deadline; queued, interrupted, or running
        under an expired lease, past their deadline), each with its terminal event and webhook;
        return their ids.

        ``run_ids`` looks at those runs only (a claim that could not start one); the runner's
        periodic sweep looks at all, at most ``limit`` a time. The candidates are read first,
        outside a write transaction (the sweep runs every heartbeat, and mostly finds none);
        the check is repeated in each ``UPDATE``, so a run claimed or resumed in between is
        left alone.
        """
        if run_ids is not None and not run_ids:
            return []
        now = utcnow()
        wanted = None if run_ids is None else list(run_ids)
        with self._read() as session:
            rows = session.execute(q.overdue_runs(now, wanted, limit)).all()
        if not rows:
            return []
        ended: list[str] = []
        with self.transaction() as conn:
            for row in rows:
                error = _overdue_error(row, now)
                seq = self._finish(conn, row.id, RunStatus.TIMED_OUT, None, error, q.overdue(now))
                if seq is not None:
                    ended.append(row.id)
        return ended

    def _finish(
        self,
        conn: Connection,
        run_id: str,
        status: RunStatus,
        output: dict[str, Any] | None,
        error: RunError | None,
        *conditions: ColumnElement[bool],
    ) -> int | None:
        """End the run if it matches ``conditions``, with its terminal event; its seq, or None."""
        error_json = None if error is None else error.to_dict()
        now = utcnow()
        started_at = conn.execute(
            update(Run)
            .where(Run.id == run_id, *conditions)
            .values(
                status=status,
                output=output,
                error=error_json,
                finished_at=now,
                lease_expires_at=None,
                interrupts=None,
            )
            .returning(Run.started_at)
        ).first()
        if started_at is None:
            return None
        data = run_events.terminal_data(status, now, started_at[0], output, error_json)
        type_ = f"run_{status}"
        seq = run_events.add_event(conn, run_id, type_, data)
        enqueue_deliveries(conn, [(run_id, type_, seq)], now)
        self._announce(conn, (), (run_id,))
        return seq

    # -- runs that go on: resumed, retried, forked (``service.storage.continuations``) -------
    def resume_run(
        self, run_id: str, values: Mapping[str, Any] | None, value: Any, owner: Owner
    ) -> Run:
        """``continuations.resume`` in a transaction of its own."""
        with self.transaction() as conn:
            run = continuations.resume(conn, run_id, values, value, owner, utcnow())
            self._announce(conn, (run_id,))
            return run

    def retry_run(self, run_id: str, owner: Owner, graph_version: str | None = None) -> Run:
        """``continuations.retry`` in a transaction of its own."""
        with self.transaction() as conn:
            run = continuations.retry(conn, run_id, owner, utcnow(), graph_version)
            self._announce(conn, (run_id,))
            return run

    def fork_run(
        self,
        source_id: str,
        from_node_run: str,
        run_input: dict[str, Any],
        new_id: str,
        owner: Owner,
        graph_version: str | None = None,
    ) -> Run:
        """``continuations.fork`` in a transaction of its own."""
        with self.transaction() as conn:
            now = utcnow()
            return continuations.fork(
                conn, source_id, from_node_run, run_input, new_id, owner, now, graph_version
            )

    def webhook_deliveries(self, run_id: str) -> list[dict[str, Any]]:
        """The run's webhook deliveries, oldest first (``WebhookOutbox.deliveries_for``)."""
        return WebhookOutbox(self).deliveries_for(run_id)

    def prior_attempts(self, run_id: str) -> dict[str, int]:
        """The attempts of the node runs that failed or were interrupted, by node run id: a
        retried or resumed run numbers their next attempts after them."""
        with self._read() as session:
            return {str(a): int(n) for a, n in session.execute(q.prior_attempts(run_id))}

    def request_cancel(self, run_id: str) -> None:
        """Flag an active run for cancelling; its owner sees the flag at its next lease
        renewal, or at once through a ``CANCEL`` notice on Postgres."""
        with self.transaction() as conn:
            conn.execute(
                update(Run)
                .where(Run.id == run_id, Run.status.in_(ACTIVE))
                .values(cancel_requested=True)
            )
            if not self.sqlite:
                notices.send(conn, notices.CANCEL, run_id)

    def claim_next(self, owner_id: str, lease_seconds: float, limit: int) -> list[Run]:
        """``claims.claim_next`` in a transaction of its own, with the runs' events."""
        now = utcnow()
        with self.transaction() as conn:
            started = claims.claim_next(conn, owner_id, lease_seconds, limit, now)
            self._bulk_events.execute(conn, [event for _, event in started])
            self._announce(conn, [run.id for run, _ in started])
            return [run for run, _ in started]

    def recovery_turn(self) -> contextlib.AbstractContextManager[bool]:
        """Whether this process may sweep for expired leases now: on Postgres, one process at
        a time (a session advisory lock held for the block); always on SQLite."""
        return advisory_turn(self.write_engine, leases.RECOVERY_LOCK)

    # -- leases and recovery (``service.storage.leases``) -----------------------------------
    def heartbeat(self, owner_id: str, lease_seconds: float) -> LeaseRenewal:
        """``leases.heartbeat`` in a transaction of its own."""
        now = utcnow()
        with self._write() as session:
            return leases.heartbeat(session, owner_id, lease_seconds, now)

    def renew_leases(self, owner_id: str, lease_seconds: float) -> list[str]:
        """Extend our active leases; return our active runs whose cancel was requested."""
        return sorted(self.heartbeat(owner_id, lease_seconds).cancel_requested)

    def release_leases(self, owner_id: str, run_ids: Sequence[str] | None = None) -> None:
        """``leases.release`` in a transaction of its own."""
        with self._write() as session:
            leases.release(session, owner_id, run_ids, utcnow())

    def expired_runs(self, exclude_owner: str | None = None) -> list[str]:
        """``leases.expired`` as of now."""
        with self._read() as session:
            return leases.expired(session, exclude_owner, utcnow())

    def take_over(
        self, run_id: str, owner_id: str, lease_seconds: float, max_attempts: int
    ) -> Run | None:
        """``leases.take_over`` in a transaction of its own; a run out of recovery attempts
        is failed in a second one (and None returned)."""
        now = utcnow()
        with self._write() as session:
            taken = leases.take_over(session, run_id, owner_id, lease_seconds, max_attempts, now)
        if not isinstance(taken, RunError):
            return taken
        self.finish_run(run_id, RunStatus.FAILED, output=None, error=taken)
        return None

    def journal(self, run_id: str) -> list[dict[str, Any]]:
        """Completed node runs as ``NodeRecord.to_dict()`` dicts, in completion order."""
        with self._read() as session:
            return [
                {
                    "run_id": r.activation_id,
                    "node": r.node,
                    "update": r.update or {},
                    "goto": r.goto or [],
                }
                for r in session.scalars(q.journal(run_id))
            ]

    def events_after(self, run_id: str, after: int, limit: int = 500) -> list[RunEvent]:
        with self._read() as session:
            return list(session.scalars(q.events_after(run_id, after, limit)))


def _table(entity: type[Base]) -> Table:
    return cast(Table, entity.__table__)


def _overdue_error(row: Any, now: datetime) -> RunError:
    """The error of an ``overdue`` run: the deadline it passed, named by its field."""
    queue_deadline = row.queue_deadline_at
    if row.status == RunStatus.QUEUED and queue_deadline is not None and queue_deadline <= now:
        return RunError.queue_deadline_passed(row.queue_timeout_seconds, queue_deadline)
    return RunError.deadline_passed(row.timeout_seconds, row.deadline_at)
