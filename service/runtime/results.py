"""The answers of ``?wait=true``: a waited run's view, kept in memory as it was stored.

A client that waits for a run it just created gets the run as the journal stored it, node runs
included, without reading it back. The runner keeps the node-run rows of a watched run as its
events are stored (``keep_row``, as the store's upsert applies them) and its view when its end
is stored (``keep``), before the wake-up that sends the waiter to ``take``.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from service.storage.records import TERMINAL, RunError, RunStatus
from service.storage.tables import Run, values_of

Rows = dict[str, dict[str, Any]]
View = tuple[dict[str, Any], list[dict[str, Any]]]


class WaitedRuns:
    """The runs a client waits for in this process, and the views of those that ended."""

    def __init__(self) -> None:
        self._watched: set[str] = set()
        self._views: dict[str, View] = {}
        self._lock = threading.Lock()

    def watch(self, run_id: str) -> None:
        """Keep the stored view of ``run_id`` when it ends here, for ``take``."""
        with self._lock:
            self._watched.add(run_id)

    def take(self, run_id: str) -> View | None:
        """The column values of the run and of its node runs as stored when it ended here
        (once), or None when it did not end in this process (then read it from the store);
        stops watching it."""
        with self._lock:
            self._watched.discard(run_id)
            return self._views.pop(run_id, None)

    def rows_for(self, run_id: str) -> Rows | None:
        """Empty rows to fill with ``keep_row`` when ``run_id`` is watched; else None."""
        with self._lock:
            return {} if run_id in self._watched else None

    def keep(
        self,
        run: Run,
        rows: Rows,
        status: RunStatus,
        output: dict[str, Any] | None,
        error: RunError | None,
        interrupts: list[dict[str, Any]] | None,
        finished_at: datetime | None,
    ) -> None:
        """Keep the view of a watched run as its end (or pause) was stored."""
        view = values_of(run)
        if status not in TERMINAL:  # interrupted: it waits, it has not finished
            finished_at = None
        view.update(status=status, output=output, finished_at=finished_at, interrupts=interrupts)
        view["error"] = None if error is None else error.to_dict()
        with self._lock:
            if run.id in self._watched:
                self._views[run.id] = (view, list(rows.values()))


def keep_row(rows: Rows, row: dict[str, Any]) -> None:
    """Apply a node event's row to the in-memory rows as the store's upsert does: a retry
    updates the row in place, keeping its first ``seq`` and any ``completed_seq``."""
    known = rows.get(row["activation_id"])
    if known is None:
        rows[row["activation_id"]] = row
        return
    known.update(
        {
            **row,
            "seq": known["seq"],
            "completed_seq": row["completed_seq"] or known["completed_seq"],
        }
    )
