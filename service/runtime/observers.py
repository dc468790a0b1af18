"""Observers of what the runtime does: the seam for metrics, traces and the like.

``RunManager`` and ``JournalWriter`` call an ``Observers`` at each step of a run's life. An
observer overrides the methods it needs; the others do nothing. An observer's error is logged
and never reaches the run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from graphflow_core import NodeEvent
from service.storage.records import RunStatus

log = logging.getLogger("graphflow.service.observers")


class RunObserver:
    """Callbacks of a run's life, from the threads that do the work: keep them quick."""

    def run_created(self, run_id: str, graph: str) -> None:
        """A run was stored as queued."""

    def run_started(
        self, run_id: str, graph: str, created_at: datetime, started_at: datetime, resumed: bool
    ) -> None:
        """This process starts executing the run (``resumed``: after another process)."""

    def node_event(self, run_id: str, graph: str, event: NodeEvent) -> None:
        """The engine reported a node run starting, completing or failing."""

    def run_finished(self, run_id: str, graph: str | None, status: RunStatus) -> None:
        """This process stored the run's end (``graph`` is None when it is not at hand)."""

    def batch_stored(self, operations: int, seconds: float) -> None:
        """The journal writer committed a batch of ``operations`` in ``seconds``."""


class Observers(RunObserver):
    """Calls every observer in turn; an observer that raises is logged and skipped."""

    def __init__(self, observers: Iterable[RunObserver] = ()) -> None:
        self._observers = list(observers)

    def __bool__(self) -> bool:
        return bool(self._observers)

    def run_created(self, run_id: str, graph: str) -> None:
        for observer in self._observers:
            _call(observer.run_created, run_id, graph)

    def run_started(
        self, run_id: str, graph: str, created_at: datetime, started_at: datetime, resumed: bool
    ) -> None:
        for observer in self._observers:
            _call(observer.run_started, run_id, graph, created_at, started_at, resumed)

    def node_event(self, run_id: str, graph: str, event: NodeEvent) -> None:
        for observer in self._observers:
            _call(observer.node_event, run_id, graph, event)

    def run_finished(self, run_id: str, graph: str | None, status: RunStatus) -> None:
        for observer in self._observers:
            _call(observer.run_finished, run_id, graph, status)

    def batch_stored(self, operations: int, seconds: float) -> None:
        for observer in self._observers:
            _call(observer.batch_stored, operations, seconds)


def _call(method: object, *args: object) -> None:
    try:
        method(*args)  # type: ignore[operator]
    except Exception:
        log.exception("observer %r failed", method)
