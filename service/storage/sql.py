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

from service.errors import LeaseLostError
from service.storage import continuations, notices
from service.storage import queries as q
from service.storage.bulk import BulkInsert
from service.storage.continuations import Owner
from service.storage.engine import advisory_turn, is_sqlite, make_engine
from service.storage.filters import RunFilter, search_rows
from service.storage.outbox import WebhookOutbox, enqueue_deliveries
from service.storage.records import (
    ACTIVE,
    TERMINAL,
    EventData,
    JournalBatch,
    JournalResult,
    LeaseRenewal,
    NodeEventWrite,
    RunClaim,
    RunError,
    RunStatus,
)
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

# The session advisory lock of the recovery sweep ("gfrecov"): one process sweeps at a time.
_RECOVERY_LOCK = 0x6766_7265_636F_76


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
        """Tell the other processes (on commit) that these runs changed or ended."""
        if self._origin is not None:
            for payload in notices.changed_payloads(self._origin, changed, ended):
                notices.send(conn, notices.CHANGED, payload)

    @staticmethod
    def _add_event(
        conn: Connection | Session,
        run_id: str,
        type_: str,
        data: EventData,
        owner_id: str | None = None,
    ) -> int:
        """Append the run's next stream event (its seq is bumped in the same transaction).

        Raises:
            LeaseLostError: ``owner_id`` is given and no longer owns the run.
        """
        if owner_id is None:
            seq = conn.execute(q.BUMP_SEQ, {"run_id": run_id}).scalar_one()
        else:
            seq = conn.execute(
                q.BUMP_SEQ_AS_OWNER, {"run_id": run_id, "expected_owner": owner_id}
            ).scalar_one_or_none()
            if seq is None:
                raise LeaseLostError(run_id)
        conn.execute(q.INSERT_EVENT, _event_row(run_id, seq, type_, data, utcnow()))
        return int(seq)

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
                _insert_search_rows(conn, [values])
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
        ``session`` which tag or metadata value to list from (``_driving_search``)."""
        driving = _driving_search(session, where) if self.sqlite else None
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
            for started, event in _claim_queued(conn, [run_id], owner_id, lease_seconds, now):
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
            seq = self._add_event(conn, run_id, write.type, write.data, owner_id)
            conn.execute(self._upsert_node, node_run_values(run_id, seq, write))
            return seq

    def write_journal(self, batch: JournalBatch) -> JournalResult:
        """Store a batch in one transaction: new runs, claims, then run events and ends.

        A handful of statements whatever the batch's size. Each run with events is fenced
        once: the rows its owner still holds are selected and locked, and a run another
        process owns now has none of its operations stored and is reported lost.
        """
        now = utcnow()
        events: list[dict[str, Any]] = []
        with self.transaction() as conn:
            creates, refused = list(batch.creates), set()
            if creates and batch.max_active_runs is not None:
                # Counted in the write transaction, once for the batch: on SQLite no other
                # writer can start a run in between; on Postgres concurrent batches of other
                # processes may each see the same count (a soft cap across processes).
                active = int(conn.scalar(q.COUNT_ACTIVE_RUNS) or 0)
                room = max(0, batch.max_active_runs - active)
                creates, refused = creates[:room], {v["id"] for v in creates[room:]}
            created = (
                {row.id for row in conn.execute(self._insert_run, creates)} if creates else set()
            )
            if created:
                _insert_search_rows(conn, (v for v in creates if v["id"] in created))
            claimed: dict[str, Run] = {}
            for (owner_id, lease_seconds), run_ids in _group_claims(batch.claims).items():
                for run, event in _claim_queued(conn, run_ids, owner_id, lease_seconds, now):
                    claimed[run.id] = run
                    events.append(event)
            owners: dict[str, list[str]] = {}
            for run_id, (owner_id, _) in batch.heads.items():
                owners.setdefault(owner_id, []).append(run_id)
            held: set[str] = set()
            for owner_id, run_ids in owners.items():
                params = {"run_ids": run_ids, "owner_id": owner_id}
                held.update(conn.scalars(q.OWNED_ACTIVE, params))
            lost = set(batch.heads) - held
            advances = []
            ends = []
            settled: list[tuple[str, str, int]] = []  # (run id, event type, seq): webhooks
            for run_id in held:
                seq = batch.heads[run_id][1]
                ending = batch.ends.get(run_id)
                if ending is None:
                    advances.append({"run_id": run_id, "seq": seq})
                    continue
                end_seq, end = ending
                error = None if end.error is None else end.error.to_dict()
                ends.append(
                    {
                        "run_id": run_id,
                        "seq": seq,
                        "status": end.status,
                        "output": end.output,
                        "error": error,
                        # An interrupted run has not finished: it waits for a person.
                        "finished_at": now if end.status in TERMINAL else None,
                        "interrupts": end.interrupts,
                    }
                )
                data = _terminal_data(
                    end.status, now, end.started_at, end.output, error, end.interrupts
                )
                type_ = f"run_{end.status}"
                events.append(_event_row(run_id, end_seq, type_, data, now))
                if end.webhook:
                    settled.append((run_id, type_, end_seq))
            if advances:
                conn.execute(q.SET_LAST_SEQ, advances)
            if ends:
                conn.execute(q.END_RUN, ends)
            enqueue_deliveries(conn, settled, now)
            stored = [(run_id, seq, w) for run_id, seq, w in batch.events if run_id in held]
            events.extend(_event_row(r, seq, w.type, w.data, now) for r, seq, w in stored)
            self._bulk_events.execute(conn, events)
            self._bulk_nodes.execute(conn, (node_run_values(r, seq, w) for r, seq, w in stored))
            if self._origin is not None:
                ended_ids = {str(end["run_id"]) for end in ends}
                changed_ids = (held | set(claimed)) - ended_ids
                self._announce(conn, changed_ids, ended_ids)
                if any(v["owner_id"] is None for v in creates if v["id"] in created):
                    notices.send(conn, notices.QUEUED)
        stored_events: dict[str, list[tuple[int, str, EventData]]] = {}
        for row in sorted(events, key=lambda row: row["seq"]):
            stored_events.setdefault(row["run_id"], []).append(
                (row["seq"], row["type"], row["data"])
            )
        return JournalResult(
            lost=lost,
            created=created,
            claimed=claimed,
            at=now,
            events=stored_events,
            refused=refused,
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
        data = _terminal_data(status, now, started_at[0], output, error_json)
        type_ = f"run_{status}"
        seq = self._add_event(conn, run_id, type_, data)
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
        """Start up to ``limit`` queued runs that no live process holds, oldest first, each
        with its ``run_started`` event.

        On Postgres the rows are picked with ``FOR UPDATE SKIP LOCKED``: workers claiming at
        the same time take different runs and never wait for each other.
        """
        now = utcnow()
        with self.transaction() as conn:
            run_ids = list(conn.scalars(q.NEXT_QUEUED, {"now": now, "limit": limit}))
            if not run_ids:
                return []
            started = _claim_queued(conn, run_ids, owner_id, lease_seconds, now)
            self._bulk_events.execute(conn, [event for _, event in started])
            self._announce(conn, [run.id for run, _ in started])
            return [run for run, _ in started]

    def recovery_turn(self) -> contextlib.AbstractContextManager[bool]:
        """Whether this process may sweep for expired leases now: on Postgres, one process at
        a time (a session advisory lock held for the block); always on SQLite."""
        return advisory_turn(self.write_engine, _RECOVERY_LOCK)

    # -- leases and recovery --------------------------------------------------------------
    def heartbeat(self, owner_id: str, lease_seconds: float) -> LeaseRenewal:
        """Extend the leases of our active runs; say which we still own and which to cancel.

        A run missing from ``owned`` was taken over by another process (our lease had expired):
        we must stop executing it.
        """
        lease = utcnow() + timedelta(seconds=lease_seconds)
        with self._write() as session:
            rows = session.execute(
                update(Run)
                .where(Run.owner_id == owner_id, Run.status.in_(ACTIVE))
                .values(lease_expires_at=lease)
                .returning(Run.id, Run.cancel_requested)
            ).all()
        return LeaseRenewal(
            owned=frozenset(rid for rid, _ in rows),
            cancel_requested=frozenset(rid for rid, cancel in rows if cancel),
        )

    def renew_leases(self, owner_id: str, lease_seconds: float) -> list[str]:
        """Extend our active leases; return our active runs whose cancel was requested."""
        return sorted(self.heartbeat(owner_id, lease_seconds).cancel_requested)

    def release_leases(self, owner_id: str, run_ids: Sequence[str] | None = None) -> None:
        """Expire the leases of our active runs (of ``run_ids`` only, when given), so that
        the next recovery, here or in another process, resumes them at once."""
        stmt = update(Run).where(Run.owner_id == owner_id, Run.status.in_(ACTIVE))
        if run_ids is not None:
            stmt = stmt.where(Run.id.in_(run_ids))
        with self._write() as session:
            session.execute(stmt.values(lease_expires_at=utcnow()))

    def expired_runs(self, exclude_owner: str | None = None) -> list[str]:
        """Active runs whose owner stopped renewing its lease, oldest first.

        ``exclude_owner`` leaves out one owner's runs: a live process whose own heartbeat ran
        late must not take over (and so run twice) what it is executing itself.
        """
        with self._read() as session:
            return list(session.scalars(q.expired_runs(utcnow(), exclude_owner)))

    def take_over(
        self, run_id: str, owner_id: str, lease_seconds: float, max_attempts: int
    ) -> Run | None:
        """Claim an active run whose lease expired; None if it is not ours to resume.

        Taking over a ``running`` run is a recovery: it is recorded as a ``run_resumed`` event
        naming the node runs that were in flight. ``recovery_attempts`` counts recoveries in a
        row without progress (no node run completed since the previous recovery), so a run
        whose process keeps dying on the same node is failed after ``max_attempts`` of them,
        while a run that merely shared a process with it keeps going. The row is locked
        (``FOR UPDATE`` on Postgres, ``BEGIN IMMEDIATE`` on SQLite): two processes never both
        take over one run.
        """
        now = utcnow()
        with self._write() as session:
            run = session.get(Run, run_id, with_for_update=True)
            if run is None or run.status not in ACTIVE:
                return None
            if run.lease_expires_at is not None and run.lease_expires_at >= now:
                return None
            run.owner_id = owner_id
            run.lease_expires_at = now + timedelta(seconds=lease_seconds)
            if run.status != RunStatus.RUNNING:
                return run  # a queued run never started: nothing was interrupted
            in_flight = self._in_flight(session, run_id)
            run.recovery_attempts = (
                1 if self._progressed_since_resume(session, run_id) else run.recovery_attempts + 1
            )
            attempts = run.recovery_attempts
            session.flush()
            if attempts <= max_attempts:
                self._add_event(
                    session,
                    run_id,
                    "run_resumed",
                    {
                        "recovery_attempt": attempts,
                        "interrupted": [{"node": n, "node_run_id": a} for a, n in in_flight],
                        "resumed_at": now.isoformat(),
                    },
                )
                return run
        self.finish_run(
            run_id,
            RunStatus.FAILED,
            output=None,
            error=RunError.recovery_limit(in_flight, attempts, max_attempts),
        )
        return None

    @staticmethod
    def _in_flight(session: Session, run_id: str) -> list[tuple[str, str]]:
        """(node run id, node) of the node runs started but not ended, in start order."""
        return [(a, n) for a, n in session.execute(q.in_flight(run_id))]

    @staticmethod
    def _progressed_since_resume(session: Session, run_id: str) -> bool:
        """True when a node run completed after the latest ``run_resumed`` event."""
        last_resume = session.scalar(q.last_resume_seq(run_id))
        if last_resume is None:
            return False  # first recovery: counts as one attempt
        return session.scalar(q.progressed_since(run_id, last_resume)) is not None

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


# On SQLite, a tag or metadata value with fewer runs than this drives a list (see below).
_FEW_RUNS = 1000


def _driving_search(session: Session | Connection, where: RunFilter) -> int | None:
    """Which tag or metadata value of ``where`` SQLite should list from (its index in
    ``where.search_run_ids()``), or None to go through the runs newest first.

    SQLite keeps no statistics of single values, so it cannot weigh the two plans as Postgres
    does: a rare tag found by probing the runs newest first probes every run, and a common
    one read from its index has all its runs read and sorted. Counting the runs of each value, up to
    ``_FEW_RUNS`` of them, decides: the rarest value with fewer runs drives (at most that
    many runs read and sorted); when every value has more, the runs are probed newest first,
    about ``limit * total / _FEW_RUNS`` of them at worst (unless the matches are all old).
    """
    driving, fewest = None, _FEW_RUNS
    for index, run_ids in enumerate(where.search_run_ids()):
        count = int(session.scalar(q.count_upto(run_ids, fewest)) or 0)
        if count < fewest:
            driving, fewest = index, count
    return driving


def _insert_search_rows(conn: Connection, runs: Iterable[Mapping[str, Any]]) -> None:
    """Store the ``run_tags`` and ``run_metadata_values`` rows of new runs (their ``runs``
    row values): one statement per table, and none for runs without tags or metadata."""
    tags: list[dict[str, str]] = []
    metadata: list[dict[str, str]] = []
    for run in runs:
        if run.get("tags") or run.get("run_metadata"):
            run_tags, run_metadata = search_rows(run)
            tags += run_tags
            metadata += run_metadata
    if tags:
        conn.execute(q.INSERT_RUN_TAGS, tags)
    if metadata:
        conn.execute(q.INSERT_RUN_METADATA, metadata)


def _table(entity: type[Base]) -> Table:
    return cast(Table, entity.__table__)


def _event_row(run_id: str, seq: int, type_: str, data: EventData, now: datetime) -> dict[str, Any]:
    return {"run_id": run_id, "seq": seq, "type": type_, "data": data, "created_at": now}


def _terminal_data(
    status: RunStatus,
    now: datetime,
    started_at: datetime | None,
    output: dict[str, Any] | None,
    error: dict[str, Any] | None,
    interrupts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The data of a run's terminal event (``run_succeeded``, ``run_failed``, ...), or of
    ``run_interrupted``, which names what the run waits for."""
    if status == RunStatus.INTERRUPTED:
        return {"status": status.value, "interrupted_at": now.isoformat(), "interrupts": interrupts}
    data: dict[str, Any] = {"status": status.value, "finished_at": now.isoformat()}
    if started_at is not None:
        data["duration_ms"] = (now - started_at).total_seconds() * 1000
    if status == RunStatus.SUCCEEDED:
        data["output"] = output
    elif error is not None:
        data["error"] = error
    return data


def _claim_queued(
    conn: Connection, run_ids: list[str], owner_id: str, lease_seconds: float, now: datetime
) -> list[tuple[Run, dict[str, Any]]]:
    """Start those of ``run_ids`` that are queued (and within their queue deadline), in one
    statement: each started run with its ``run_started`` event row (for the caller to insert).

    A run with ``timeout_seconds`` gets its deadline at its first start, in the same
    transaction; later starts (after a resume) keep it, so it counts from the first start.
    """
    lease = now + timedelta(seconds=lease_seconds)
    params = {"run_ids": run_ids, "now": now, "owner_id": owner_id, "lease": lease}
    started = []
    deadlines = []
    for row in conn.execute(q.CLAIM_QUEUED, params):
        run = Run(**row._mapping)
        if run.timeout_seconds is not None and run.deadline_at is None:
            # Computed here rather than in SQL: date arithmetic differs between the dialects.
            run.deadline_at = now + timedelta(seconds=run.timeout_seconds)
            deadlines.append({"run_id": run.id, "deadline": run.deadline_at})
        data = {"graph": run.graph, "started_at": now.isoformat()}
        if run.deadline_at is not None:
            data["deadline_at"] = run.deadline_at.isoformat()
        started.append((run, _event_row(run.id, run.last_seq, "run_started", data, now)))
    if deadlines:
        conn.execute(q.SET_DEADLINE, deadlines)
    return started


def _overdue_error(row: Any, now: datetime) -> RunError:
    """The error of an ``overdue`` run: the deadline it passed, named by its field."""
    queue_deadline = row.queue_deadline_at
    if row.status == RunStatus.QUEUED and queue_deadline is not None and queue_deadline <= now:
        return RunError.queue_deadline_passed(row.queue_timeout_seconds, queue_deadline)
    return RunError.deadline_passed(row.timeout_seconds, row.deadline_at)


def _group_claims(claims: Sequence[RunClaim]) -> dict[tuple[str, float], list[str]]:
    """Claims by (owner, lease): each group is one statement."""
    groups: dict[tuple[str, float], list[str]] = {}
    for claim in claims:
        groups.setdefault((claim.owner_id, claim.lease_seconds), []).append(claim.run_id)
    return groups
