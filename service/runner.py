"""Executes runs on the engine in worker threads and persists every event before announcing it.

Each node event from ``graph.invoke(on_event=...)`` is written to the store (node-run row and
stream event in one transaction) and only then are streams woken, so a client never sees an event
that is not stored. A heartbeat thread renews the leases of our active runs, relays cancel
requests made through another process, and resumes runs whose owner died (expired lease) with
the journal of their completed node runs.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from graphflow_core import EventKind, NodeError, NodeEvent, NodeRecord, RunCancelledError
from service.registry import RegisteredWorkflow
from service.settings import Settings
from service.store import NodeEventWrite, RunStore

log = logging.getLogger("graphflow.service.runner")

_EVENT_TYPES = {
    EventKind.STARTED: ("node_started", "running"),
    EventKind.COMPLETED: ("node_completed", "succeeded"),
    EventKind.FAILED: ("node_failed", "failed"),
}


def error_info(exc: BaseException, node: str | None = None) -> dict[str, Any]:
    """The public ``{type, message, node}`` of a run failure (the node's own exception)."""
    if isinstance(exc, NodeError):
        cause = exc.__cause__ or exc
        return {"type": type(cause).__name__, "message": str(cause), "node": exc.node}
    return {"type": type(exc).__name__, "message": str(exc), "node": getattr(exc, "node", node)}


def _wall(monotonic_ts: float) -> datetime:
    return datetime.fromtimestamp(time.time() - time.monotonic() + monotonic_ts, UTC)


def _check_json(value: Any, what: str) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} is not JSON serializable: {exc}") from exc


def node_event_write(ev: NodeEvent) -> NodeEventWrite:
    """Translate an engine ``NodeEvent`` into the row change and stream event to store."""
    type_, status = _EVENT_TYPES[ev.kind]
    started = _wall(ev.started_at)
    finished = _wall(ev.ended_at) if ev.ended_at is not None else None
    duration = (ev.ended_at - ev.started_at) * 1000 if ev.ended_at is not None else None
    data: dict[str, Any] = {
        "node": ev.node,
        "node_run_id": ev.run_id,
        "attempt": ev.attempt,
        "parents": list(ev.parents),
        "started_at": started.isoformat(),
    }
    update = goto = error = None
    if finished is not None:
        data["finished_at"] = finished.isoformat()
        data["duration_ms"] = duration
    if ev.kind == EventKind.COMPLETED:
        record = ev.record().to_dict()
        update, goto = record["update"], record["goto"]
        _check_json(update, f"update of node {ev.node!r}")
        _check_json(goto, f"goto of node {ev.node!r}")
        data["update"] = update
        data["goto"] = goto
    elif ev.kind == EventKind.FAILED:
        err = ev.error or RuntimeError("unknown error")
        error = {"type": type(err).__name__, "message": str(err), "node": ev.node}
        data["error"] = error
        data["retrying"] = ev.retrying
    return NodeEventWrite(
        type=type_,
        activation_id=ev.run_id,
        node=ev.node,
        status=status,
        attempt=ev.attempt,
        parents=ev.parents,
        started_at=started,
        finished_at=finished,
        duration_ms=duration,
        update=update,
        goto=goto,
        error=error,
        data=data,
    )


class RunManager:
    """Owns the worker threads, the heartbeat thread and the cancel events of live runs."""

    def __init__(
        self,
        store: RunStore,
        workflows: Mapping[str, RegisteredWorkflow],
        settings: Settings,
        notify: Callable[[str], None],
    ) -> None:
        self.store = store
        self.workflows = workflows
        self.settings = settings
        self.notify = notify
        self.owner_id = settings.owner_id
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._cancels: dict[str, threading.Event] = {}
        self._user_cancelled: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        for i in range(self.settings.max_concurrent_runs):
            t = threading.Thread(target=self._work, name=f"graphflow-run-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        hb = threading.Thread(target=self._heartbeat, name="graphflow-heartbeat", daemon=True)
        hb.start()
        self._threads.append(hb)
        self.recover()

    def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop taking work; give live runs ``grace_seconds``, then interrupt and release them.

        Interrupted runs stay ``running`` with an expired lease: the next process resumes them.
        """
        self._stopping.set()
        for _ in range(self.settings.max_concurrent_runs):
            self._queue.put(None)
        deadline = time.monotonic() + grace_seconds
        with self._lock:
            for event in self._cancels.values():
                if grace_seconds <= 0:
                    event.set()
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            for event in self._cancels.values():
                event.set()
        for t in self._threads:
            t.join(1.0)
        try:
            self.store.release_leases(self.owner_id)
        except Exception:  # pragma: no cover - DB gone at shutdown
            log.exception("could not release leases")

    # -- public ---------------------------------------------------------------------------
    def submit(self, run_id: str) -> None:
        self._queue.put(run_id)

    def cancel(self, run_id: str) -> bool:
        """Cancel a queued run at once, or ask a running one to stop. False if already ended."""
        if self.store.cancel_queued(run_id):
            self.notify(run_id)
            return True
        with self._lock:
            self._user_cancelled.add(run_id)
            event = self._cancels.get(run_id)
        self.store.request_cancel(run_id)  # seen by the owner's heartbeat if it is elsewhere
        if event is not None:
            event.set()
        return True

    def recover(self) -> list[str]:
        """Take over active runs whose lease expired and queue them; return their ids."""
        taken = []
        for run_id in self.store.expired_runs():
            run = self.store.take_over(
                run_id,
                self.owner_id,
                self.settings.lease_seconds,
                self.settings.max_recovery_attempts,
            )
            if run is None:
                self.notify(run_id)  # it may have been failed for too many recoveries
                continue
            log.info("resuming run %s (%s)", run_id, run.status)
            taken.append(run_id)
            self.submit(run_id)
        return taken

    # -- threads --------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            run_id = self._queue.get()
            if run_id is None or self._stopping.is_set():
                return
            try:
                self.execute(run_id)
            except Exception:
                log.exception("run %s crashed the runner", run_id)

    def _heartbeat(self) -> None:
        while not self._stopping.wait(self.settings.heartbeat_interval):
            try:
                for run_id in self.store.renew_leases(self.owner_id, self.settings.lease_seconds):
                    with self._lock:
                        self._user_cancelled.add(run_id)
                        event = self._cancels.get(run_id)
                    if event is not None:
                        event.set()
                self.recover()
            except Exception:
                log.exception("heartbeat failed")

    def execute(self, run_id: str) -> None:
        """Run ``run_id`` to its end (or until the process stops) in the calling thread."""
        run = self.store.claim_run(run_id, self.owner_id, self.settings.lease_seconds)
        if run is None:
            return
        self.notify(run_id)
        wf = self.workflows.get(run.graph)
        if wf is None:
            self._finish(
                run_id,
                "failed",
                error={
                    "type": "GraphNotFound",
                    "message": f"graph {run.graph!r} is not loaded",
                    "node": None,
                },
            )
            return
        cancel = threading.Event()
        with self._lock:
            self._cancels[run_id] = cancel
            if run.cancel_requested or run_id in self._user_cancelled:
                self._user_cancelled.add(run_id)
                cancel.set()
        try:
            journal = [NodeRecord.from_dict(d) for d in self.store.journal(run_id)]

            def on_event(ev: NodeEvent) -> None:
                self.store.record_node_event(run_id, node_event_write(ev))
                self.notify(run_id)

            output = wf.graph.invoke(
                dict(run.input),
                on_event=on_event,
                journal=journal,
                cancel=cancel,
                max_concurrent=run.max_concurrent,
            )
        except RunCancelledError:
            with self._lock:
                by_user = run_id in self._user_cancelled
            if by_user or not self._stopping.is_set():
                self._finish(run_id, "cancelled")
            # else: interrupted by shutdown; left running for the next process to resume
        except Exception as exc:
            self._finish(run_id, "failed", error=error_info(exc))
        else:
            try:
                _check_json(output, "run output")
            except TypeError as exc:
                self._finish(run_id, "failed", error=error_info(exc))
            else:
                self._finish(run_id, "succeeded", output=output)
        finally:
            with self._lock:
                self._cancels.pop(run_id, None)
                self._user_cancelled.discard(run_id)

    def _finish(
        self,
        run_id: str,
        status: str,
        *,
        output: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        self.store.finish_run(run_id, status, output=output, error=error)
        self.notify(run_id)
