"""Drivers that execute a run: threads for sync graphs, an event loop for async ones.

Both share ``_Driver``: it dispatches ready activations within the concurrency cap, emits
events, applies retry policies and stops cleanly on failure or cancellation. The subclasses
only decide how a node function is called and how its outcome comes back.
"""

from __future__ import annotations

import asyncio
import heapq
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .command import normalize_result
from .errors import GraphFlowError, NodeError, NodeTimeoutError, RunCancelledError, RunInterrupted
from .events import EventKind, NodeEvent
from .graph import NodeSpec
from .interrupts import Interrupt, NodeInterrupt, NodeRunContext, current_node_run
from .journal import NodeRecord
from .reducers import Reducer
from .scheduler import Activation, RunScheduler
from .topology import Topology
from .workers import WorkerPool, call_in_thread

EventCallback = Callable[[NodeEvent], None]

# How often a run waiting on long nodes looks at its cancel event.
_CANCEL_POLL_SECONDS = 0.05


class _Timeout(Exception):
    """Internal marker: the engine, not the node, ended an attempt for running too long."""


class _Driver:
    def __init__(
        self,
        *,
        nodes: Mapping[str, NodeSpec],
        topology: Topology,
        entry_point: str,
        reducers: Mapping[str, Reducer],
        state: Mapping[str, Any],
        recursion_limit: int,
        journal: Iterable[NodeRecord],
        on_event: EventCallback | None,
        cancel: threading.Event | None,
        max_concurrent: int | None,
        pool: WorkerPool,
        max_node_runs: int | None = None,
        resume: Mapping[str, Any] | None = None,
    ) -> None:
        self.nodes = nodes
        self.on_event = on_event
        self.cancel = cancel
        self.limit = max_concurrent
        self.pool = pool
        self.running = 0
        self.error: BaseException | None = None
        # (due time, sequence, activation, attempt) of retries waiting for their backoff
        self.retries: list[tuple[float, int, Activation, Any]] = []
        self._sequence = 0
        # Values for interrupts, by interrupt id; and the node runs waiting for one. A waiting
        # activation stays active in the scheduler: joins it may reach keep waiting for it.
        self.resume: dict[str, Any] = dict(resume or {})
        self.waiting: list[tuple[tuple[int, ...], Interrupt]] = []
        self.sched = RunScheduler(
            topology, entry_point, reducers, state, recursion_limit, journal, max_node_runs
        )

    # -- shared decisions --------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self.error is not None or (self.cancel is not None and self.cancel.is_set())

    def can_dispatch(self) -> bool:
        return not self.stopping and (self.limit is None or self.running < self.limit)

    def next_ready(self) -> tuple[Activation, Any] | None:
        try:
            return self.sched.pop_ready()
        except GraphFlowError as exc:
            self.error = exc
            return None

    def started(self, act: Activation) -> float | None:
        """Count ``act`` as running and announce it; None if the announcement was refused."""
        act.attempt += 1
        now = time.monotonic()
        if self.on_event is not None:
            try:
                self.on_event(_event(EventKind.STARTED, act, now))
            except Exception as exc:
                self.sched.finished(act)
                error = _callback_failure(act, exc, "was not started")
                error.__cause__ = exc
                self._fail_run(error)
                return None
        self.running += 1
        return now

    def succeeded(self, act: Activation, started_at: float, result: Any) -> None:
        self.running -= 1
        try:
            update, goto = normalize_result(act.node, result)
            if self.on_event is not None:
                try:
                    self.on_event(
                        _event(EventKind.COMPLETED, act, started_at, update=update, goto=goto)
                    )
                except Exception as exc:
                    raise _callback_failure(
                        act, exc, "completed, but its result was rejected"
                    ) from exc
        except GraphFlowError as exc:
            self.sched.finished(act)
            self._fail_run(exc)
            return
        try:
            self.sched.complete(act, update, goto)
        except GraphFlowError as exc:
            self._fail_run(exc)

    def _fail_run(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error

    def context(self, act: Activation) -> NodeRunContext:
        """What ``interrupt`` sees in ``act``'s node function."""
        return NodeRunContext(act.node, act.id, self.resume)

    def interrupted(self, act: Activation, started_at: float, signal: NodeInterrupt) -> None:
        """``act`` waits for a value: it routes nowhere, and the run goes on without it."""
        self.running -= 1
        if self.on_event is not None:
            try:
                self.on_event(
                    _event(EventKind.INTERRUPTED, act, started_at, interrupt=signal.interrupt)
                )
            except Exception as exc:
                self.sched.finished(act)
                error = _callback_failure(act, exc, "was interrupted, but its payload was rejected")
                error.__cause__ = exc
                self._fail_run(error)
                return
        self.waiting.append((act.key, signal.interrupt))

    def failed(self, act: Activation, started_at: float, exc: BaseException) -> None:
        """Retry the attempt if its policy says so, else fail the run."""
        if isinstance(exc, NodeInterrupt):
            self.interrupted(act, started_at, exc)
            return
        self.running -= 1
        spec = self.nodes[act.node]
        timed_out = isinstance(exc, _Timeout)
        cause: BaseException = TimeoutError(str(exc)) if timed_out else exc
        retry = spec.retry
        retrying = (
            retry is not None and not self.stopping and retry.should_retry(act.attempt, cause)
        )
        if self.on_event is not None:
            try:
                self.on_event(
                    _event(EventKind.FAILED, act, started_at, error=cause, retrying=retrying)
                )
            except Exception:  # noqa: S110 - the node's own error is the one to report
                pass
        if retrying:
            assert retry is not None
            self._sequence += 1
            due = time.monotonic() + retry.delay(act.attempt)
            heapq.heappush(self.retries, (due, self._sequence, act, None))
            return
        self.sched.finished(act)
        if self.error is None:
            if timed_out:
                error: NodeError = NodeTimeoutError(
                    act.node, act.id, act.attempt, spec.timeout or 0.0
                )
            else:
                error = NodeError(
                    act.node, act.id, act.attempt, f"node {act.node!r} raised {exc!r}"
                )
            error.__cause__ = cause
            self.error = error

    def due_retries(self) -> list[Activation]:
        now = time.monotonic()
        due = []
        while self.retries and self.retries[0][0] <= now:
            due.append(heapq.heappop(self.retries)[2])
        return due

    def wait_budget(self) -> float | None:
        """How long the driver may block waiting for an outcome."""
        budget: float | None = None
        if self.retries and not self.stopping:
            budget = max(0.0, self.retries[0][0] - time.monotonic())
        if self.cancel is not None:
            budget = _CANCEL_POLL_SECONDS if budget is None else min(budget, _CANCEL_POLL_SECONDS)
        return budget

    def is_done(self) -> bool:
        if self.running:
            return False
        if self.stopping:
            return True
        if self.retries:
            return False
        if self.waiting:
            # Joins below a waiting node wait for it: what is left pending stays pending.
            return not self.sched.has_ready()
        return self.sched.is_finished()

    def result(self) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        if self.cancel is not None and self.cancel.is_set():
            raise RunCancelledError(self.sched.records())
        if self.waiting:
            self.waiting.sort(key=lambda entry: entry[0])
            interrupts = tuple(interrupt for _, interrupt in self.waiting)
            raise RunInterrupted(interrupts, self.sched.records(), dict(self.resume))
        return self.sched.final_state()

    def _emit(self, event: NodeEvent) -> None:
        assert self.on_event is not None
        self.on_event(event)


def _argument(act: Activation) -> Any:
    """What a node is called with: its own copy of its view, or a ``Send`` payload."""
    if act.is_send:
        return act.payload
    assert act.view is not None
    return dict(act.view)


_Outcome = tuple[int, bool, Any]


class SyncDriver(_Driver):
    """Runs sync node functions in a thread pool; outcomes come back through a queue.

    When a node is the only thing that can run, it runs inline in the caller's thread, so a
    chain pays no thread hand-off per node. A node past its timeout is abandoned: its thread
    cannot be stopped, and its late outcome is ignored.
    """

    def run(self) -> dict[str, Any]:
        self._inline = NodeRunContext("", "", self.resume)
        self._outcomes: queue.SimpleQueue[_Outcome] = queue.SimpleQueue()
        self._in_flight: dict[int, tuple[Activation, float]] = {}
        self._deadlines: list[tuple[float, int]] = []
        self._token = 0
        while True:
            self._dispatch()
            if self.is_done():
                return self.result()
            budget = self.wait_budget()
            if self._deadlines:
                until = max(0.0, self._deadlines[0][0] - time.monotonic())
                budget = until if budget is None else min(budget, until)
            try:
                token, ok, value = self._outcomes.get(timeout=budget)
            except queue.Empty:
                self._expire()
                continue
            entry = self._in_flight.pop(token, None)
            if entry is None:
                continue  # the attempt timed out before this late outcome arrived
            act, started_at = entry
            if ok:
                self.succeeded(act, started_at, value)
            else:
                self.failed(act, started_at, value)

    def _dispatch(self) -> None:
        for act in self.due_retries():
            self._launch(act, _argument(act))
        while self.can_dispatch():
            item = self.next_ready()
            if item is None:
                return
            act, arg = item
            spec = self.nodes[act.node]
            if self.running == 0 and spec.timeout is None and not self.sched.has_ready():
                started_at = self.started(act)
                if started_at is None:
                    return
                # One context serves every inline call (they never overlap): a chain pays no
                # allocation per node for interrupt() to find its node run.
                inline = self._inline
                inline.node, inline.node_run_id, inline.calls = act.node, act.id, 0
                token = current_node_run.set(inline)
                try:
                    result = spec.fn(arg)
                except (Exception, NodeInterrupt) as exc:
                    current_node_run.reset(token)
                    self.failed(act, started_at, exc)
                else:
                    current_node_run.reset(token)
                    self.succeeded(act, started_at, result)
            else:
                self._launch(act, arg)

    def _launch(self, act: Activation, arg: Any) -> None:
        spec = self.nodes[act.node]
        started_at = self.started(act)
        if started_at is None:
            return
        self._token += 1
        self._in_flight[self._token] = (act, started_at)
        self.pool.submit(
            _call_and_report, self._outcomes, self._token, spec.fn, arg, self.context(act)
        )
        if spec.timeout is not None:
            heapq.heappush(self._deadlines, (started_at + spec.timeout, self._token))

    def _expire(self) -> None:
        now = time.monotonic()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, token = heapq.heappop(self._deadlines)
            entry = self._in_flight.pop(token, None)
            if entry is not None:
                act, started_at = entry
                timeout = self.nodes[act.node].timeout
                self.failed(act, started_at, _Timeout(f"no result after {timeout:g}s"))


def _call_node(fn: Callable[[Any], Any], arg: Any, context: NodeRunContext) -> Any:
    """``fn(arg)`` with ``context`` as the node run ``interrupt`` sees."""
    token = current_node_run.set(context)
    try:
        return fn(arg)
    finally:
        current_node_run.reset(token)


def _call_and_report(
    outcomes: queue.SimpleQueue[_Outcome],
    token: int,
    fn: Callable[[Any], Any],
    arg: Any,
    context: NodeRunContext,
) -> None:
    try:
        result = _call_node(fn, arg, context)
    except BaseException as exc:  # reported to the driver, which decides
        outcomes.put((token, False, exc))
    else:
        outcomes.put((token, True, result))


class AsyncDriver(_Driver):
    """Runs async nodes as tasks on the running loop and sync nodes in the thread pool."""

    async def run(self) -> dict[str, Any]:
        self._done: deque[tuple[Activation, float, bool, Any]] = deque()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                for act in self.due_retries():
                    self._launch(act, _argument(act))
                while self.can_dispatch():
                    item = self.next_ready()
                    if item is None:
                        break
                    self._launch(*item)
                if self.is_done():
                    return self.result()
                if not self._done:
                    self._wake.clear()
                    try:
                        async with asyncio.timeout(self.wait_budget()):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
                while self._done:
                    act, started_at, ok, value = self._done.popleft()
                    if ok:
                        self.succeeded(act, started_at, value)
                    else:
                        self.failed(act, started_at, value)
        finally:
            for task in self._tasks:
                task.cancel()

    def _launch(self, act: Activation, arg: Any) -> None:
        started_at = self.started(act)
        if started_at is None:
            return
        task = asyncio.get_running_loop().create_task(self._call(act, arg, started_at))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, act: Activation, arg: Any, started_at: float) -> None:
        spec = self.nodes[act.node]
        context = self.context(act)
        try:
            async with asyncio.timeout(spec.timeout) as scope:
                if spec.is_async:
                    current_node_run.set(context)  # this task's own copy of the context
                    result = await spec.fn(arg)
                else:
                    result = await call_in_thread(
                        _call_node, spec.fn, arg, context, submit=self.pool.submit
                    )
        except TimeoutError as exc:
            outcome: tuple[bool, Any] = (
                False,
                _Timeout(f"no result after {spec.timeout:g}s") if scope.expired() else exc,
            )
        except (Exception, NodeInterrupt) as exc:
            outcome = (False, exc)
        else:
            outcome = (True, result)
        self._done.append((act, started_at, *outcome))
        self._wake.set()


def _event(kind: EventKind, act: Activation, started_at: float, **fields: Any) -> NodeEvent:
    """The event of ``act``'s current attempt; it ends now unless it is a STARTED event."""
    return NodeEvent(
        kind,
        act.id,
        act.node,
        tuple(parent.id for parent in act.parents),
        act.attempt,
        started_at,
        None if kind is EventKind.STARTED else time.monotonic(),
        **fields,
    )


def _callback_failure(act: Activation, exc: Exception, what: str) -> NodeError:
    """The error for an ``on_event`` callback that raised (say, an update it cannot store)."""
    return NodeError(
        act.node, act.id, act.attempt, f"node {act.node!r} (run {act.id}) {what}: {exc}"
    )
