"""One execution of a claimed run: the engine invoked on its journal, and how the run ends.

The engine's node events go to the process's ``JournalWriter`` as they come (``on_event``);
how the engine stopped (an output, an interrupt, a cancel, an error), together with why this
process stopped it (``Execution``), decides how the run ends, which is stored after its events.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from graphflow_core import (
    Interrupt,
    NodeEvent,
    NodeRecord,
    NodeRunLimitError,
    RunCancelledError,
    RunInterrupted,
)
from service.runtime.guards import deadline_error
from service.runtime.journal import JournalWriter, RunJournal
from service.runtime.node_events import node_event_write
from service.runtime.observers import Observers
from service.runtime.registry import RegisteredWorkflow
from service.runtime.results import WaitedRuns, keep_row
from service.settings import Settings
from service.storage.base import RunStore
from service.storage.records import RunError, RunStatus, encode_json, storage_failure
from service.storage.tables import Run, node_run_values, utcnow

__all__ = ["Execution", "RunExecutor", "interrupt_view"]

# The runner's logger: what it logs about a run keeps one name, whichever module says it.
log = logging.getLogger("graphflow.service.runner")


@dataclass
class Execution:
    """What this process knows about a run it is executing, and why it may have to stop."""

    cancel: threading.Event = field(default_factory=threading.Event)
    by_user: bool = False  # a client cancelled it: it ends ``cancelled``
    timed_out: bool = False  # it hit GRAPHFLOW_MAX_RUN_SECONDS: it ends ``failed``
    deadline_passed: bool = False  # it passed its own deadline: it ends ``timed_out``
    # Another process resumes it (our lease was lost, or released at shutdown): we neither
    # write its events nor finish it.
    disowned: bool = False
    # Its events could not be stored: it ends ``failed`` with this error.
    storage_error: BaseException | None = None
    # The run as claimed, and its node-run rows when a client waits for it here.
    run: Run | None = None
    rows: dict[str, dict[str, Any]] | None = None

    def disown(self, run_id: str, why: str) -> None:
        """Stop the run without writing to it again: another process resumes it."""
        log.warning("run %s: %s; stopping it", run_id, why, extra={"run_id": run_id})
        self.disowned = True
        self.cancel.set()

    def expire(self, deadline: bool) -> None:
        """Stop the run at its deadline (``deadline``) or at GRAPHFLOW_MAX_RUN_SECONDS."""
        if deadline:
            self.deadline_passed = True
        else:
            self.timed_out = True
        self.cancel.set()


class RunExecutor:
    """Invokes the graphs of claimed runs in the calling thread and stores how each ends."""

    def __init__(
        self,
        store: RunStore,
        journal: JournalWriter,
        settings: Settings,
        observe: Observers,
        waited: WaitedRuns,
        *,
        stopping: threading.Event,
        notify: Callable[[str], None],
        wake_webhooks: Callable[[], None],
    ) -> None:
        """``stopping``: set once the process shuts down (a run it cancels is not ended)."""
        self.store = store
        self.journal = journal
        self.settings = settings
        self.owner_id = settings.owner_id
        self.observe = observe
        self._waited = waited
        self._stopping = stopping
        self.notify = notify
        self._wake_webhooks = wake_webhooks

    def invoke(self, run: Run, wf: RegisteredWorkflow, ex: Execution) -> None:
        """Run ``run`` on the engine until it ends, pauses or is stopped, and store that."""
        run_id = run.id
        # A run whose only event is the run_started of this claim has no node runs to replay.
        records = self.store.journal(run_id) if run.last_seq > 1 else []
        journal = [NodeRecord.from_dict(d) for d in records]
        # A node run that failed (before a retry) or was interrupted (before a resume) runs
        # again: its attempts count on from the ones recorded.
        earlier = self.store.prior_attempts(run_id) if run.last_seq > 1 else {}

        def lost() -> None:
            ex.disown(run_id, "another process took it over")

        def failed(exc: BaseException) -> None:
            ex.storage_error = exc
            ex.cancel.set()

        head = RunJournal(
            run_id, self.owner_id, run.started_at, run.last_seq + 1, on_lost=lost, on_failed=failed
        )
        rows = self._waited.rows_for(run_id)
        ex.run, ex.rows = run, rows

        graph = run.graph
        observe = self.observe
        if observe:
            started = run.started_at or utcnow()
            observe.run_started(run_id, graph, run.created_at, started, run.last_seq > 1)

        def on_event(ev: NodeEvent) -> None:
            if ex.disowned:  # the run is another process's: its events are not ours
                return
            if earlier and ev.run_id in earlier:
                ev = dataclasses.replace(ev, attempt=earlier[ev.run_id] + ev.attempt)
            if observe:
                observe.node_event(run_id, graph, ev)
            write = node_event_write(ev)
            seq = self.journal.append(head, write)
            if rows is not None:
                keep_row(rows, node_run_values(run_id, seq, write))

        try:
            output = wf.graph.invoke(
                dict(run.input),
                on_event=on_event,
                journal=journal,
                cancel=ex.cancel,
                max_concurrent=run.max_concurrent,
                max_node_runs=self.settings.max_node_runs,
                resume=run.resume_values,
            )
        except RunInterrupted as paused:
            if ex.disowned:
                return
            if ex.storage_error is not None:
                self._fail_unstored(head, ex.storage_error)
                return
            if ex.deadline_passed:  # it would wait for a person past its deadline
                self._end(head, RunStatus.TIMED_OUT, error=deadline_error(run), ex=ex)
                return
            interrupts = [interrupt_view(i) for i in paused.interrupts]
            self._end(head, RunStatus.INTERRUPTED, interrupts=interrupts, ex=ex)
        except RunCancelledError:
            if ex.disowned:
                return
            if ex.storage_error is not None:
                self._fail_unstored(head, ex.storage_error)
            elif ex.deadline_passed:
                self._end(head, RunStatus.TIMED_OUT, error=deadline_error(run), ex=ex)
            elif ex.timed_out:
                assert self.settings.max_run_seconds is not None
                error = RunError.run_timeout(self.settings.max_run_seconds)
                self._end(head, RunStatus.FAILED, error=error, ex=ex)
            elif ex.by_user or not self._stopping.is_set():
                self._end(head, RunStatus.CANCELLED, ex=ex)
            # else: interrupted by shutdown; the next process resumes it
        except Exception as exc:
            if not ex.disowned:
                if ex.storage_error is not None:
                    self._fail_unstored(head, ex.storage_error)
                    return
                error = RunError.from_exception(exc)
                if isinstance(exc, NodeRunLimitError):
                    cap = f" (the service's cap: GRAPHFLOW_MAX_NODE_RUNS={exc.limit})"
                    error = dataclasses.replace(error, message=error.message + cap)
                self._end(head, RunStatus.FAILED, error=error, ex=ex)
        else:
            if ex.disowned:
                return
            try:
                encode_json(output, "run output")
            except TypeError as exc:
                self._end(head, RunStatus.FAILED, error=RunError.from_exception(exc), ex=ex)
            else:
                self._end(head, RunStatus.SUCCEEDED, output=output, ex=ex)

    def finish(
        self,
        run_id: str,
        status: RunStatus,
        *,
        output: dict[str, Any] | None = None,
        error: RunError | None = None,
        graph: str | None = None,
    ) -> None:
        """End a run we own directly in the store (not through the journal)."""
        seq = self.store.finish_run(
            run_id, status, output=output, error=error, owner_id=self.owner_id
        )
        self.notify(run_id)
        if seq is not None:
            self._wake_webhooks()
            self.observe.run_finished(run_id, graph, status)

    def _end(
        self,
        head: RunJournal,
        status: RunStatus,
        *,
        output: dict[str, Any] | None = None,
        error: RunError | None = None,
        interrupts: list[dict[str, Any]] | None = None,
        ex: Execution,
    ) -> None:
        """End (or pause) the run through the journal, after its events; wait until it is
        stored.

        An end the database refuses (say, an output it cannot hold) fails the run instead.
        """
        if head.failed is not None:
            self._fail_unstored(head, head.failed)
            return
        if ex.run is not None and ex.rows is not None:
            head.on_stored = functools.partial(
                self._keep_result, head, ex, status, output, error, interrupts
            )
        try:
            webhook = ex.run is not None and ex.run.webhook_url is not None
            ending = self.journal.end(
                head, status, output=output, error=error, interrupts=interrupts, webhook=webhook
            )
            stored = ending.result()
        except Exception as exc:
            self._fail_unstored(head, exc)
        else:
            if stored:
                self._wake_webhooks()
                self.observe.run_finished(head.run_id, ex.run.graph if ex.run else None, status)

    def _keep_result(
        self,
        head: RunJournal,
        ex: Execution,
        status: RunStatus,
        output: dict[str, Any] | None,
        error: RunError | None,
        interrupts: list[dict[str, Any]] | None,
    ) -> None:
        """Keep the view of a watched run as its end was stored (on the journal's thread,
        before the wake-up that sends its waiter to ``take_result``)."""
        assert ex.run is not None and ex.rows is not None
        self._waited.keep(ex.run, ex.rows, status, output, error, interrupts, head.finished_at)

    def _fail_unstored(self, head: RunJournal, exc: BaseException) -> None:
        """Fail a run whose events or end could not be stored (the log keeps the detail)."""
        if storage_failure(exc) is not None:
            log.error(
                "run %s: storing its progress failed",
                head.run_id,
                exc_info=exc,
                extra={"run_id": head.run_id},
            )
        error = RunError.from_exception(exc, node=head.failed_node)
        self.finish(head.run_id, RunStatus.FAILED, error=error)


def interrupt_view(interrupt: Interrupt) -> dict[str, Any]:
    """What an interrupted run waits for, as stored and shown: ``{id, node_run_id, node,
    payload}``."""
    return {
        "id": interrupt.id,
        "node_run_id": interrupt.node_run_id,
        "node": interrupt.node,
        "payload": interrupt.payload,
    }
