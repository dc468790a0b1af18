"""One journal writer per process: the events of every run, committed in batches.

Every hot write of the process goes through ``JournalWriter``: new runs (from the API), claims
(from the run workers), node events and run ends (from the runs, which go on at engine speed
without waiting). One thread drains the queue: everything waiting (up to ``max_batch``
operations) is written in one transaction (group commit), so no two writers ever wait on each
other, and only after the commit are streams woken, once per batch. So:

1. An event is stored before it is announced: wake-ups follow the commit.
2. Order holds: the queue is FIFO and batches commit in order, so a node's completion is never
   stored after its children's, and the journal of completed node runs is always a causally
   closed prefix of the run (which is what resume replays).
3. Fencing is checked once per run per batch: the batch's ``UPDATE runs ... WHERE owner_id =
   :me`` finds no row when another process took the run over; that run's operations are then
   dropped and its ``on_lost`` callback stops it.
4. Sequence numbers are assigned in memory by the run's owner (``RunJournal.next_seq``), from
   the ``last_seq`` the claim returned: no per-event read-modify-write of the run row.

A batch the database refuses is retried one run at a time, so that one run's unstorable data
fails that run alone (``on_failed``) and never its neighbours in the batch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from service.errors import DatabaseUnavailableError, TooManyActiveRunsError
from service.storage.records import (
    JournalBatch,
    JournalResult,
    NodeEventWrite,
    RunClaim,
    RunEnd,
    RunError,
    RunStatus,
    database_outage,
    outage_reason,
)

__all__ = ["JournalStore", "JournalWriter", "RunJournal"]

log = logging.getLogger("graphflow.service.journal")


class JournalStore(Protocol):
    """What the writer needs from storage: one batch in one transaction."""

    def write_journal(self, batch: JournalBatch) -> JournalResult:
        """Store the batch in one transaction; say which runs were lost, created, claimed."""
        ...


@dataclass(eq=False)
class RunJournal:
    """The in-memory head of one run's journal, owned by the process executing the run."""

    run_id: str
    owner_id: str
    started_at: datetime | None
    next_seq: int
    on_lost: Callable[[], None] = lambda: None
    on_failed: Callable[[BaseException], None] = lambda exc: None
    lost: bool = False
    failed: BaseException | None = None
    failed_node: str | None = None  # the node whose event the database refused
    finished_at: datetime | None = None  # when its end was stored
    on_stored: Callable[[], None] = lambda: None  # its end is stored (before any wake-up)
    ended: Future[bool] = field(default_factory=Future)

    def take_seq(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        return seq


@dataclass(frozen=True, slots=True)
class _Event:
    journal: RunJournal
    seq: int
    write: NodeEventWrite


@dataclass(frozen=True, slots=True)
class _End:
    journal: RunJournal
    seq: int
    end: RunEnd


@dataclass(frozen=True, slots=True)
class _Create:
    values: dict[str, Any]
    done: Future[bool]  # False: the idempotency key was taken


@dataclass(frozen=True, slots=True)
class _Claim:
    claim: RunClaim
    done: Future[Any]  # the started run, or None when it was not queued


_Write = _Event | _End | _Create | _Claim
_Op = _Write | None


# Retries of a batch while the database is out of reach: quick at first, then every 2 s.
_OUTAGE_FIRST_RETRY_SECONDS = 0.05
_OUTAGE_MAX_RETRY_SECONDS = 2.0


class JournalWriter:
    """Writes run events in batches from one thread; wakes streams after each commit."""

    def __init__(
        self,
        store: JournalStore,
        on_commit: Callable[[Iterable[str], Iterable[str], Mapping[str, list[Any]]], None],
        *,
        max_batch: int = 1024,
        max_active_runs: int | None = None,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        """``on_batch(operations, seconds)`` is called after each stored batch."""
        self._store = store
        self._on_batch = on_batch
        self._max_active_runs = max_active_runs
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self._pending = 0
        # Set while the database is out of reach: new creates and claims fail at once (503)
        # instead of queueing behind the events the writer keeps retrying.
        self._outage = threading.Event()
        self._outage_reason = "the database is unavailable"  # of the last outage

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer thread (once; later calls do nothing)."""
        with self._idle:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._loop, name="graphflow-journal", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write everything queued so far, then stop the thread."""
        thread = self._thread
        if thread is None:
            return
        self._thread = None
        self._queue.put(None)
        if thread is not threading.current_thread():  # a stop from a commit callback
            thread.join(timeout)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is written; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    @property
    def out_of_reach(self) -> bool:
        """Whether the database is out of reach now: run events wait, creates are refused."""
        return self._outage.is_set()

    # -- producers (any thread) -----------------------------------------------------------
    def create(self, values: dict[str, Any]) -> Future[bool]:
        """Queue a new run (its ``runs`` row values); True once stored, False when its
        idempotency key was taken. A storage error is the future's exception, and so is
        ``TooManyActiveRunsError`` when ``max_active_runs`` runs are queued or running."""
        done: Future[bool] = Future()
        if self._outage.is_set():
            done.set_exception(DatabaseUnavailableError(self._outage_reason))
            return done
        self._put(_Create(values, done))
        return done

    def claim(self, claim: RunClaim) -> Future[Any]:
        """Queue the start of a queued run; the future gives the started run (a
        ``tables.Run``), or None when the run was not queued (perhaps ours to resume)."""
        done: Future[Any] = Future()
        if self._outage.is_set():
            done.set_exception(DatabaseUnavailableError(self._outage_reason))
            return done
        self._put(_Claim(claim, done))
        return done

    def append(self, journal: RunJournal, write: NodeEventWrite) -> int:
        """Queue a node event of ``journal``'s run; return its seq. Never blocks on the DB."""
        seq = journal.take_seq()
        self._put(_Event(journal, seq, write))
        return seq

    def end(
        self,
        journal: RunJournal,
        status: RunStatus,
        *,
        output: dict[str, Any] | None = None,
        error: RunError | None = None,
        interrupts: list[dict[str, Any]] | None = None,
        webhook: bool = False,
    ) -> Future[bool]:
        """Queue the run's end (status, output, terminal event) after its events; for an
        ``interrupted`` run, its pause, with what it waits for. ``webhook``: the run has one,
        whose delivery is queued in the same transaction.

        The future resolves to True once stored, False when the run was lost to another
        process, or to the storage error when the end itself could not be stored.
        """
        end = RunEnd(status, output, error, journal.started_at, interrupts, webhook)
        self._put(_End(journal, journal.take_seq(), end))
        return journal.ended

    def _put(self, op: _Op) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put(op)

    # -- the writer thread ----------------------------------------------------------------
    def _loop(self) -> None:
        stop = False
        while not stop:
            ops: list[_Write] = []
            op = self._queue.get()
            while True:
                if op is None:
                    stop = True
                else:
                    ops.append(op)
                if stop or len(ops) >= self._max_batch:
                    break
                try:
                    op = self._queue.get_nowait()
                except queue.Empty:
                    break
            if ops:
                self._write(ops)
                with self._idle:
                    self._pending -= len(ops)
                    self._idle.notify_all()

    def _write(self, ops: list[_Write]) -> None:
        ops = [op for op in ops if not _run_stopped(op)]
        if not ops:
            return
        started = time.perf_counter()
        try:
            result = self._store.write_journal(_batch(ops, self._max_active_runs))
        except Exception as exc:
            if (outage := database_outage(exc)) is not None:
                self._ride_out(ops, outage_reason(outage))
                return
            groups: dict[int, list[_Write]] = {}
            for op in ops:
                key = id(op.journal) if isinstance(op, _Event | _End) else id(op)
                groups.setdefault(key, []).append(op)
            if len(groups) > 1:
                log.warning(
                    "a journal batch of %d parts failed; retrying part by part", len(groups)
                )
                for group in groups.values():
                    self._write(group)
            elif len(ops) > 1:
                self._write_one_by_one(ops)
            else:
                _fail(ops[0], exc)
            return
        if self._on_batch is not None:
            self._on_batch(len(ops), time.perf_counter() - started)
        self._settle(ops, result)

    def _ride_out(self, ops: list[_Write], reason: str) -> None:
        """The database is out of reach: refuse the creates and claims (the client may
        retry), and keep the runs' events and ends, writing them again, with backoff, until the
        database is back. The runs go on meanwhile; their events wait here in order."""
        log.warning("%s; keeping run events until it can be written", reason)
        self._outage_reason = reason
        self._outage.set()
        delay = _OUTAGE_FIRST_RETRY_SECONDS
        taken = 0  # operations taken from the queue meanwhile (``_pending`` counts them)
        try:
            pending = self._keep(ops, reason)
            while pending:
                time.sleep(delay)
                delay = min(delay * 2, _OUTAGE_MAX_RETRY_SECONDS)
                queued = self._take_queued()
                taken += len(queued)
                pending += self._keep(queued, reason)
                pending = [op for op in pending if not _run_stopped(op)]
                if self._thread is None:  # stopping: what is not stored is resumed later
                    for op in pending:
                        _fail(op, DatabaseUnavailableError(reason))
                    return
                try:
                    result = self._store.write_journal(_batch(pending, self._max_active_runs))
                except Exception as exc:
                    if database_outage(exc) is None:
                        self._outage.clear()
                        self._write(pending)  # another error: the usual handling
                        return
                    continue
                self._settle(pending, result)
                log.warning("the database can be written again; the kept run events are stored")
                return
        finally:
            self._outage.clear()
            if taken:
                with self._idle:
                    self._pending -= taken
                    self._idle.notify_all()

    @staticmethod
    def _keep(ops: list[_Write], reason: str) -> list[_Write]:
        """During an outage: refuse ``ops``' creates and claims (the client may retry); return
        their events and ends, to be kept in order."""
        kept: list[_Write] = []
        for op in ops:
            if isinstance(op, _Create | _Claim):
                op.done.set_exception(DatabaseUnavailableError(reason))
            else:
                kept.append(op)
        return kept

    def _take_queued(self) -> list[_Write]:
        """The operations queued since the outage began (a create sent just before it must
        not wait for its end); the stop, if queued, stays for the loop."""
        ops: list[_Write] = []
        while True:
            try:
                op = self._queue.get_nowait()
            except queue.Empty:
                return ops
            if op is None:
                self._queue.put(None)
                return ops
            ops.append(op)

    def _write_one_by_one(self, ops: list[_Write]) -> None:
        """Store one run's operations singly: those before the one refused are kept."""
        for op in ops:
            if _run_stopped(op):
                return
            try:
                result = self._store.write_journal(_batch([op], self._max_active_runs))
            except Exception as exc:
                _fail(op, exc)
                return
            self._settle([op], result)

    def _settle(self, ops: list[_Write], result: JournalResult) -> None:
        """After a commit: wake streams, answer creates and claims, stop the runs found
        lost, resolve ends."""
        lost = result.lost
        run_ops = [op for op in ops if isinstance(op, _Event | _End)]
        changed = {op.journal.run_id for op in run_ops} | set(result.claimed)
        ended = {op.journal.run_id for op in run_ops if isinstance(op, _End)}
        for run_op in run_ops:  # before the wake-up: a waiter may look for what on_stored keeps
            if isinstance(run_op, _End) and run_op.journal.run_id not in lost:
                stored = run_op.journal
                stored.finished_at = result.at
                try:
                    stored.on_stored()
                except Exception:
                    log.exception(
                        "the stored end of run %s was not kept",
                        stored.run_id,
                        extra={"run_id": stored.run_id},
                    )
        try:
            self._on_commit(changed - lost, ended - lost, result.events)
        except Exception:
            log.exception("waking the streams after a journal commit failed")
        for op in ops:
            if isinstance(op, _Create):
                if op.values["id"] in result.refused:
                    assert self._max_active_runs is not None
                    op.done.set_exception(TooManyActiveRunsError(self._max_active_runs))
                else:
                    op.done.set_result(op.values["id"] in result.created)
            elif isinstance(op, _Claim):
                op.done.set_result(result.claimed.get(op.claim.run_id))
            else:
                journal = op.journal
                if journal.run_id in lost and not journal.lost:
                    journal.lost = True
                    journal.on_lost()
                    if not journal.ended.done():
                        journal.ended.set_result(False)
                elif isinstance(op, _End) and not journal.ended.done():
                    journal.ended.set_result(True)


def _run_stopped(op: _Write) -> bool:
    """Whether ``op`` belongs to a run that was lost or could not be stored: dropped."""
    return isinstance(op, _Event | _End) and (op.journal.lost or op.journal.failed is not None)


def _fail(op: _Write, exc: BaseException) -> None:
    """The database refused ``op``: a create or claim raises; a run stores nothing more."""
    if isinstance(op, _Create | _Claim):
        op.done.set_exception(exc)
        return
    journal = op.journal
    journal.failed = exc
    journal.failed_node = op.write.node if isinstance(op, _Event) else None
    journal.on_failed(exc)
    if not journal.ended.done():
        journal.ended.set_exception(exc)


def _batch(ops: list[_Write], max_active_runs: int | None) -> JournalBatch:
    events: list[tuple[str, int, NodeEventWrite]] = []
    ends: dict[str, tuple[int, RunEnd]] = {}
    heads: dict[str, tuple[str, int]] = {}
    creates: list[dict[str, Any]] = []
    claims: list[RunClaim] = []
    for op in ops:
        if isinstance(op, _Create):
            creates.append(op.values)
        elif isinstance(op, _Claim):
            claims.append(op.claim)
        else:
            run_id = op.journal.run_id
            heads[run_id] = (op.journal.owner_id, op.seq)
            if isinstance(op, _Event):
                events.append((run_id, op.seq, op.write))
            else:
                ends[run_id] = (op.seq, op.end)
    return JournalBatch(
        heads=heads,
        events=events,
        ends=ends,
        creates=creates,
        claims=claims,
        max_active_runs=max_active_runs,
    )
