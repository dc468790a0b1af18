"""``CompiledGraph``: a validated graph that runs, any number of times, from any thread."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any

from .errors import GraphValidationError
from .events import NodeEvent, RunCompleted
from .executor import AsyncDriver, SyncDriver
from .graph import NodeSpec
from .journal import NodeRecord
from .mermaid import render_mermaid
from .reducers import Reducer, reducer_name
from .topology import Topology
from .workers import WorkerPool, call_in_thread

__all__ = ["DEFAULT_RECURSION_LIMIT", "CompiledGraph"]

DEFAULT_RECURSION_LIMIT = 10_000
# Sync nodes run on threads; a fan-out of sleeping nodes needs one each to overlap.
DEFAULT_THREADS = 256

_END = object()


class CompiledGraph:
    """A runnable graph. Safe to share: every invocation keeps its own state.

    Made by ``StateGraph.compile()``; not constructed directly.
    """

    def __init__(
        self,
        *,
        nodes: Mapping[str, NodeSpec],
        edges: list[tuple[str, str]],
        entry_point: str,
        reducers: Mapping[str, Reducer],
        max_concurrent: int | None,
    ) -> None:
        self._nodes = dict(nodes)
        self._edges = tuple(edges)
        self._entry_point = entry_point
        self._reducers = dict(reducers)
        self._max_concurrent = max_concurrent
        self._topology = Topology(self._nodes, self._edges, entry_point)
        self._has_async = any(spec.is_async for spec in self._nodes.values())
        self._pool: WorkerPool | None = None
        self._pool_lock = threading.Lock()

    # -- introspection -----------------------------------------------------------------------

    @property
    def nodes(self) -> tuple[NodeSpec, ...]:
        """The nodes, in the order they were added."""
        return tuple(self._nodes.values())

    @property
    def edges(self) -> tuple[tuple[str, str], ...]:
        """The static edges ``(source, target)``, in the order they were added."""
        return self._edges

    @property
    def entry_point(self) -> str:
        return self._entry_point

    @property
    def reducers(self) -> dict[str, str]:
        """State keys with a declared reducer, mapped to the reducer's name."""
        return {key: reducer_name(fn) for key, fn in self._reducers.items()}

    @property
    def max_concurrent(self) -> int | None:
        return self._max_concurrent

    def to_mermaid(self) -> str:
        """A Mermaid flowchart of nodes, edges and declared goto destinations."""
        return render_mermaid(self._nodes.values(), self._edges, self._entry_point)

    # -- running -----------------------------------------------------------------------------

    def invoke(
        self,
        state: Mapping[str, Any],
        *,
        recursion_limit: int | None = None,
        on_event: Callable[[NodeEvent], None] | None = None,
        journal: Iterable[NodeRecord] = (),
        cancel: threading.Event | None = None,
        max_concurrent: int | None = None,
        max_node_runs: int | None = None,
        resume: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Run the graph on ``state`` and return the final state. ``state`` is not mutated.

        ``on_event`` receives every node event in causal order, in the thread running the
        scheduler. ``journal`` holds records of node runs that already completed: they are not
        run again. Setting ``cancel`` stops the run: running nodes finish, nothing new starts.
        ``resume`` gives values to interrupts by interrupt id (``graphflow_core.interrupts``).

        Raises:
            NodeError: a node raised (after its retries); ``__cause__`` is the original.
            NodeTimeoutError: a node ran past its timeout.
            InvalidNodeResultError, InvalidRouteError: a node returned something unusable.
            RecursionLimitError: the run went deeper than ``recursion_limit``.
            NodeRunLimitError: the run would start more than ``max_node_runs`` node runs.
            RunCancelledError: ``cancel`` was set.
            RunInterrupted: nodes called ``interrupt()`` and wait for values.
            GraphValidationError: ``state`` is not a mapping or a limit is below 1.
        """
        kwargs = self._driver_kwargs(
            state, recursion_limit, on_event, journal, cancel, max_concurrent, max_node_runs, resume
        )
        if not self._has_async:
            return SyncDriver(**kwargs).run()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(AsyncDriver(**kwargs).run())
        # Called from inside an event loop: run ours on a thread rather than nest loops.
        outcome: list[Any] = []

        def run_loop() -> None:
            try:
                outcome.append(asyncio.run(AsyncDriver(**kwargs).run()))
            except BaseException as exc:
                outcome.append(_Failure(exc))

        thread = threading.Thread(target=run_loop, name="graphflow-loop")
        thread.start()
        thread.join()
        if isinstance(outcome[0], _Failure):
            raise outcome[0].error
        return outcome[0]

    async def ainvoke(
        self,
        state: Mapping[str, Any],
        *,
        recursion_limit: int | None = None,
        on_event: Callable[[NodeEvent], None] | None = None,
        journal: Iterable[NodeRecord] = (),
        cancel: threading.Event | None = None,
        max_concurrent: int | None = None,
        max_node_runs: int | None = None,
        resume: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Async ``invoke``: async nodes run on this loop, sync nodes on threads.

        Raises the same errors as ``invoke``. Cancelling the awaiting task cancels the run.
        """
        cancel = cancel or threading.Event()
        kwargs = self._driver_kwargs(
            state, recursion_limit, on_event, journal, cancel, max_concurrent, max_node_runs, resume
        )
        if self._has_async:
            return await AsyncDriver(**kwargs).run()
        try:
            return await call_in_thread(lambda: SyncDriver(**kwargs).run())
        except asyncio.CancelledError:
            cancel.set()
            raise

    def stream(
        self,
        state: Mapping[str, Any],
        *,
        recursion_limit: int | None = None,
        journal: Iterable[NodeRecord] = (),
        cancel: threading.Event | None = None,
        max_concurrent: int | None = None,
        resume: Mapping[str, Any] | None = None,
    ) -> Iterator[NodeEvent | RunCompleted]:
        """Run the graph, yielding each ``NodeEvent`` as it happens, then ``RunCompleted``.

        Raises what ``invoke`` raises, after yielding the events before the failure. Closing
        the iterator early cancels the run.
        """
        cancel = cancel or threading.Event()
        items: queue.SimpleQueue[Any] = queue.SimpleQueue()

        def produce() -> None:
            try:
                final = self.invoke(
                    state,
                    recursion_limit=recursion_limit,
                    on_event=items.put,
                    journal=journal,
                    cancel=cancel,
                    max_concurrent=max_concurrent,
                    resume=resume,
                )
                items.put(RunCompleted(final))
            except BaseException as exc:
                items.put(_Failure(exc))
            items.put(_END)

        thread = threading.Thread(target=produce, name="graphflow-stream", daemon=True)
        thread.start()
        try:
            while (item := items.get()) is not _END:
                if isinstance(item, _Failure):
                    raise item.error
                yield item
        finally:
            cancel.set()

    async def astream(
        self,
        state: Mapping[str, Any],
        *,
        recursion_limit: int | None = None,
        journal: Iterable[NodeRecord] = (),
        cancel: threading.Event | None = None,
        max_concurrent: int | None = None,
        resume: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[NodeEvent | RunCompleted]:
        """Async ``stream``: yields each ``NodeEvent``, then ``RunCompleted``."""
        cancel = cancel or threading.Event()
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[Any] = asyncio.Queue()

        def forward(event: NodeEvent) -> None:
            loop.call_soon_threadsafe(items.put_nowait, event)

        async def produce() -> None:
            try:
                final = await self.ainvoke(
                    state,
                    recursion_limit=recursion_limit,
                    on_event=forward,
                    journal=journal,
                    cancel=cancel,
                    max_concurrent=max_concurrent,
                    resume=resume,
                )
                loop.call_soon(items.put_nowait, RunCompleted(final))
            except Exception as exc:
                loop.call_soon(items.put_nowait, _Failure(exc))
            loop.call_soon(items.put_nowait, _END)

        task = asyncio.create_task(produce())
        try:
            while (item := await items.get()) is not _END:
                if isinstance(item, _Failure):
                    raise item.error
                yield item
        finally:
            cancel.set()
            await asyncio.gather(task, return_exceptions=True)

    # -- internals ---------------------------------------------------------------------------

    def _pool_executor(self) -> WorkerPool:
        if self._pool is None:
            with self._pool_lock:
                if self._pool is None:
                    threads = max(DEFAULT_THREADS, self._max_concurrent or 0)
                    self._pool = WorkerPool(threads)
        return self._pool

    def _driver_kwargs(
        self,
        state: Mapping[str, Any],
        recursion_limit: int | None,
        on_event: Callable[[NodeEvent], None] | None,
        journal: Iterable[NodeRecord],
        cancel: threading.Event | None,
        max_concurrent: int | None,
        max_node_runs: int | None,
        resume: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        if not isinstance(state, Mapping):
            raise GraphValidationError(
                f"invoke() needs the input state as a dict, got {type(state).__name__}"
            )
        limit = DEFAULT_RECURSION_LIMIT if recursion_limit is None else recursion_limit
        if limit < 1:
            raise GraphValidationError(f"recursion_limit must be >= 1, got {limit}")
        for name, value in (("max_concurrent", max_concurrent), ("max_node_runs", max_node_runs)):
            if value is not None and value < 1:
                raise GraphValidationError(f"{name} must be >= 1, got {value}")
        return {
            "nodes": self._nodes,
            "topology": self._topology,
            "entry_point": self._entry_point,
            "reducers": self._reducers,
            "state": state,
            "recursion_limit": limit,
            "journal": journal,
            "on_event": on_event,
            "cancel": cancel,
            "max_concurrent": max_concurrent or self._max_concurrent,
            "pool": self._pool_executor(),
            "max_node_runs": max_node_runs,
            "resume": resume,
        }


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error
