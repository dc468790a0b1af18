"""Executes runs on the engine in worker threads and persists every event before announcing it.

Each node event from ``graph.invoke(on_event=...)`` goes to the process's ``JournalWriter``,
which stores the events of all runs in batches and only then wakes streams, so a client never
sees an event that is not stored, and the engine never waits for the database between nodes. A
``LeaseKeeper`` renews the leases of our active runs, relays cancel
requests made through another process, stops runs another process has taken over, and resumes
runs whose owner died (expired lease) with the journal of their completed node runs.

Deadlines: a run's ``timeout_seconds`` counts from its first start (``deadline_at``, stored at
that claim), so it survives restarts and takeovers. The owner arms a timer for it and ends the
run ``timed_out``, its nodes in flight treated as on cancel. Runs nobody executes (queued past
their queue deadline; interrupted, or orphaned by a dead owner, past their deadline) are ended
by the sweep that each heartbeat runs (``recover``), and by a claim that finds one.

Graph versions: a run that ran before (resumed after a crash, an interrupt or a retry) and
whose recorded graph version is not the loaded one fails with ``GraphVersionChanged``, unless
its workflow was registered with ``on_version_change="resume"``.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from typing import Any

from service.errors import DatabaseUnavailableError
from service.runtime.claims import QueuedRunClaimer
from service.runtime.execution import Execution, RunExecutor, interrupt_view
from service.runtime.guards import refusal, start_timer
from service.runtime.journal import JournalWriter
from service.runtime.leases import LeaseKeeper
from service.runtime.observers import Observers, RunObserver
from service.runtime.peers import PeerNotices
from service.runtime.registry import RegisteredWorkflow
from service.runtime.results import View, WaitedRuns
from service.settings import Role, Settings
from service.storage.base import RunStore
from service.storage.engine import is_sqlite
from service.storage.records import LeaseRenewal, RunClaim, RunError, RunStatus
from service.storage.tables import Run

# ``interrupt_view`` moved to ``execution``; importers of it from here keep working.
__all__ = ["RunManager", "interrupt_view"]

log = logging.getLogger("graphflow.service.runner")


class RunManager:
    """Owns the worker threads, the lease heartbeat and the local state of live runs."""

    def __init__(
        self,
        store: RunStore,
        workflows: Mapping[str, RegisteredWorkflow],
        settings: Settings,
        notify: Callable[[str], None],
        notify_many: Callable[[Iterable[str], Iterable[str], Mapping[str, list[Any]]], None]
        | None = None,
        observers: Iterable[RunObserver] = (),
        wake_webhooks: Callable[[], None] | None = None,
    ) -> None:
        """``wake_webhooks``: called when a run ended or paused here (its webhook, if any, is
        queued in the outbox): the deliverer looks now rather than at its next poll."""
        self.store = store
        self.workflows = workflows
        self.settings = settings
        self.notify = notify
        self._wake_streams = notify_many or _one_by_one(notify)
        self.observe = Observers(observers)
        self._wake_webhooks = wake_webhooks or _nothing
        self.journal = JournalWriter(
            store,
            self._wake_streams,
            max_active_runs=settings.max_active_runs,
            on_batch=self.observe.batch_stored,
        )
        self.owner_id = settings.owner_id
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._executions: dict[str, Execution] = {}
        self._user_cancelled: set[str] = set()  # cancelled before its execution began here
        # Runs we stopped when our leases expired: ours still, and renewed by our heartbeat
        # once the database is back, so nobody would resume them. ``recover`` lets them go.
        self._let_go: set[str] = set()
        self._waited = WaitedRuns()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._executor = RunExecutor(
            store,
            self.journal,
            settings,
            self.observe,
            self._waited,
            stopping=self._stopping,
            notify=notify,
            wake_webhooks=self._wake_webhooks,
        )
        self._hurry = threading.Event()
        self._stop_lock = threading.Lock()
        self._stopped = False
        self._workers: list[threading.Thread] = []
        # Run slots: runs handed to the workers here and not finished yet.
        self._slots_used = 0
        # Runs queued for any worker (``graphflow api`` makes them): only on Postgres.
        self._claimer: QueuedRunClaimer | None = None
        if settings.role == Role.WORKER or (
            settings.role == Role.ALL and not is_sqlite(settings.database_url)
        ):
            self._claimer = QueuedRunClaimer(
                store,
                self.owner_id,
                lease_seconds=settings.lease_seconds,
                poll_seconds=settings.poll_seconds,
                free_slots=self._free_slots,
                hand_over=self._hand_over,
            )
        self._claimed: dict[str, Run] = {}
        self._notices = PeerNotices(
            settings,
            claimer=self._claimer,
            wake_streams=self._wake_streams,
            notify=notify,
            cancel_if_requested=self._cancel_if_requested,
        )
        self._leases = LeaseKeeper(
            store,
            self.owner_id,
            lease_seconds=settings.lease_seconds,
            interval=settings.heartbeat_interval,
            on_renewal=self._on_renewal,
            on_expired=self._disown_all,
            on_tick=self.recover,
        )

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def accepting(self) -> bool:
        """False once shutdown began: no new runs are taken."""
        return not self._stopping.is_set()

    @property
    def stopping(self) -> threading.Event:
        """Set once shutdown began: long work on the runner's behalf (a purge) ends on it."""
        return self._stopping

    @property
    def executes(self) -> bool:
        """Whether this process executes runs (not ``graphflow api``)."""
        return self.settings.role.executes

    def start(self) -> None:
        """Start the workers, the lease heartbeat and the claims of queued runs; resume runs
        orphaned by dead processes. With ``graphflow api``, only the journal writer (and the
        notices of other processes) start."""
        self.journal.start()
        self._notices.start()
        if not self.executes:
            return
        for i in range(self.settings.max_concurrent_runs):
            t = threading.Thread(target=self._work, name=f"graphflow-run-{i}", daemon=True)
            t.start()
            self._workers.append(t)
        self._leases.start()
        self._touch_health_file()
        self.recover()
        if self._claimer is not None:
            self._claimer.start()

    def stop(self, grace_seconds: float = 5.0) -> None:
        """Drain: start nothing new, let nodes in flight finish for up to ``grace_seconds``.

        Runs that did not end stay ``running``; their leases are released so that the next
        process resumes them at once (nodes still in flight past the grace run again there).
        Idempotent; a concurrent second call waits for the first.
        """
        self._stopping.set()
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
            if self._claimer is not None:
                self._claimer.stop()
            self._notices.stop()
            for _ in self._workers:
                self._queue.put(None)
            with self._lock:
                for ex in self._executions.values():
                    ex.cancel.set()  # the engine starts nothing new; running nodes finish
            deadline = time.monotonic() + grace_seconds
            busy = [t for t in self._workers if t is not threading.current_thread()]
            while busy and time.monotonic() < deadline and not self._hurry.is_set():
                busy[0].join(min(0.05, max(0.0, deadline - time.monotonic())))
                busy = [t for t in busy if t.is_alive()]
            self._disown_all()
            self.journal.stop()  # what finished in the grace period is stored before we go
            self._leases.stop()
            try:
                self.store.release_leases(self.owner_id)
            except Exception:  # pragma: no cover - DB gone at shutdown
                log.exception("could not release leases")

    def hurry(self) -> None:
        """End the grace period of a ``stop`` in progress now."""
        self._hurry.set()

    # -- public ---------------------------------------------------------------------------
    def create(self, values: dict[str, Any]) -> Future[bool]:
        """Store a new run (its ``runs`` row) through the journal, batched with other writes.

        The future is False when its idempotency key was taken; its exception is
        ``TooManyActiveRunsError`` when ``max_active_runs`` runs are queued or running, or the
        storage error.
        """
        self.journal.start()
        done = self.journal.create(values)
        if self.observe:
            run_id, graph = values["id"], values["graph"]

            def created(future: Future[bool]) -> None:
                if not future.cancelled() and future.exception() is None and future.result():
                    self.observe.run_created(run_id, graph)

            done.add_done_callback(created)
        return done

    def watch(self, run_id: str) -> None:
        """Keep the stored view of ``run_id`` when it ends here, for ``take_result``."""
        self._waited.watch(run_id)

    def take_result(self, run_id: str) -> View | None:
        """The view of a watched run as stored when it ended here, or None (``WaitedRuns``)."""
        return self._waited.take(run_id)

    def submit(self, run_id: str) -> None:
        """Queue a run we own for execution (ignored while stopping: its lease hands it on)."""
        if self.accepting:
            with self._lock:
                self._slots_used += 1
            self._queue.put(run_id)

    def cancel(self, run_id: str, graph: str | None = None) -> bool:
        """Cancel a queued run at once, or ask a running one to stop. False if already ended."""
        if self.store.cancel_queued(run_id):
            self.notify(run_id)
            self._wake_webhooks()
            self.observe.run_finished(run_id, graph, RunStatus.CANCELLED)
            return True
        with self._lock:
            ex = self._executions.get(run_id)
            if ex is None:
                self._user_cancelled.add(run_id)
        self.store.request_cancel(run_id)  # seen by the owner's heartbeat if it is elsewhere
        if ex is not None:
            ex.by_user = True
            ex.cancel.set()
        return True

    def recover(self) -> list[str]:
        """End the runs nobody executes that passed a deadline; then take over active runs
        whose lease expired, as many as there are free slots, and queue them; return their
        ids. One process sweeps at a time (``recovery_turn``)."""
        taken: list[str] = []
        if not self.accepting or not self.executes:
            return taken
        with self.store.recovery_turn() as mine:
            if mine:
                self._time_out_overdue()
                self._release_let_go()
                taken = self._take_over_expired()
        return taken

    def _time_out_overdue(self, run_ids: list[str] | None = None) -> None:
        """End ``timed_out`` the runs past a deadline that nobody executes (of ``run_ids``
        only, when given): their streams, waiters and webhooks here learn of it now."""
        for run_id in self.store.time_out_overdue(run_ids):
            log.info("run %s passed a deadline", run_id, extra={"run_id": run_id})
            self.notify(run_id)
            self._wake_webhooks()
            self.observe.run_finished(run_id, None, RunStatus.TIMED_OUT)

    def _take_over_expired(self) -> list[str]:
        taken: list[str] = []
        # Our own runs count too, unless we are executing them: a run we let go when our
        # leases expired (the database was out of reach longer than a lease) is ours to resume.
        with self._lock:
            executing = set(self._executions)
        for run_id in self.store.expired_runs():
            if run_id in executing:
                continue
            if self._free_slots() <= 0:
                break
            run = self.store.take_over(
                run_id,
                self.owner_id,
                self.settings.lease_seconds,
                self.settings.max_recovery_attempts,
            )
            if run is None:
                self.notify(run_id)  # it may have been failed for too many recoveries
                continue
            log.info("resuming run %s (%s)", run_id, run.status, extra={"run_id": run_id})
            taken.append(run_id)
            self.submit(run_id)
        return taken

    # -- runs queued for any worker, notices of other processes ----------------------------
    def _free_slots(self) -> int:
        with self._lock:
            return self.settings.max_concurrent_runs - self._slots_used

    def _hand_over(self, run: Run) -> None:
        """Execute a run ``QueuedRunClaimer`` claimed (it is ``running`` and ours)."""
        with self._lock:
            self._claimed[run.id] = run
        self.notify(run.id)
        self.submit(run.id)

    def _cancel_if_requested(self, run_id: str) -> None:
        with self._lock:
            ex = self._executions.get(run_id)
        if ex is None:
            return
        run = self.store.get_run(run_id)
        if run is not None and run.cancel_requested:
            ex.by_user = True
            ex.cancel.set()

    def _touch_health_file(self) -> None:
        path = self.settings.health_file
        if path is not None:
            try:
                with open(path, "a"):
                    os.utime(path)
            except OSError:
                log.exception("could not touch the health file %s", path)

    # -- leases ---------------------------------------------------------------------------
    def _on_renewal(self, renewal: LeaseRenewal) -> None:
        self._touch_health_file()
        with self._lock:
            executions = list(self._executions.items())
        for run_id, ex in executions:
            if run_id not in renewal.owned:
                # The renewal is a snapshot: a run created or claimed since is ours all the
                # same. Only another owner on the row itself means the lease was lost.
                current = self.store.get_run(run_id)
                if current is None or current.owner_id in (None, self.owner_id):
                    continue
                ex.disown(run_id, "its lease was lost to another process")
            elif run_id in renewal.cancel_requested:
                ex.by_user = True
                ex.cancel.set()

    def _disown_all(self) -> None:
        with self._lock:
            for ex in self._executions.values():
                ex.disowned = True
                ex.cancel.set()
            self._let_go.update(self._executions)

    def _release_let_go(self) -> None:
        """Expire the leases of the runs we stopped when our leases expired, once their
        executions ended: the takeover that follows resumes them from their journals."""
        with self._lock:
            done = self._let_go - set(self._executions)
        if done:
            self.store.release_leases(self.owner_id, sorted(done))
            with self._lock:
                self._let_go -= done

    # -- execution ------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            run_id = self._queue.get()
            if run_id is None or self._stopping.is_set():
                return
            try:
                self.execute(run_id)
            except Exception:
                log.exception("run %s crashed the runner", run_id, extra={"run_id": run_id})
            finally:
                with self._lock:
                    self._slots_used -= 1
                if self._claimer is not None:
                    self._claimer.slot_freed()

    def execute(self, run_id: str) -> None:
        """Run ``run_id`` to its end (or until we stop or lose it) in the calling thread."""
        self.journal.start()
        ex = Execution()
        with self._lock:
            if run_id in self._executions:
                return  # queued twice (a takeover raced a submit): one execution is enough
            self._executions[run_id] = ex
        timer = None
        try:
            with self._lock:
                run = self._claimed.pop(run_id, None)  # claimed by ``QueuedRunClaimer``
            if run is None:
                claim = RunClaim(run_id, self.owner_id, self.settings.lease_seconds)
                try:
                    run = self.journal.claim(claim).result()  # the writer wakes its streams
                except DatabaseUnavailableError:
                    # Still queued and ours (our heartbeat keeps its lease): try again soon.
                    retry = threading.Timer(_CLAIM_RETRY_SECONDS, self.submit, (run_id,))
                    retry.daemon = True
                    retry.start()
                    return
            if run is None:  # not queued: a run of ours to resume, or not ours at all
                run = self.store.claim_run(run_id, self.owner_id, self.settings.lease_seconds)
                if run is None:
                    # Perhaps queued past its queue deadline (claims refuse those): it ends.
                    self._time_out_overdue([run_id])
                    return
                self.notify(run_id)
            wf = self.workflows.get(run.graph)
            if wf is None:
                error = RunError("GraphNotFound", f"graph {run.graph!r} is not loaded")
                self._executor.finish(run_id, RunStatus.FAILED, error=error, graph=run.graph)
                return
            refused = refusal(run, wf)
            if refused is not None:
                self._executor.finish(run_id, refused[0], error=refused[1], graph=run.graph)
                return
            if run.last_seq <= 1 and run.graph_version != wf.version:
                # Created by a process that loaded another version (a rolling deploy): the
                # run starts, and so later resumes, on ours.
                self.store.record_graph_version(run_id, self.owner_id, wf.version)
                run.graph_version = wf.version
            with self._lock:
                if run.cancel_requested or run_id in self._user_cancelled:
                    ex.by_user = True
                    ex.cancel.set()
                if self._stopping.is_set():
                    ex.cancel.set()
            timer = start_timer(run, self.settings.max_run_seconds, ex.expire)
            self._executor.invoke(run, wf, ex)
        finally:
            if timer is not None:
                timer.cancel()
            with self._lock:
                self._executions.pop(run_id, None)
                self._user_cancelled.discard(run_id)


# How soon a run whose claim met a database outage is claimed again.
_CLAIM_RETRY_SECONDS = 1.0


def _nothing() -> None:
    pass


def _one_by_one(
    notify: Callable[[str], None],
) -> Callable[[Iterable[str], Iterable[str], Mapping[str, list[Any]]], None]:
    def notify_many(changed: Iterable[str], ended: Iterable[str], events: Any) -> None:
        for run_id in changed:
            notify(run_id)

    return notify_many
