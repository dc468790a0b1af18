"""The retention sweeper: a daemon thread that deletes runs finished longer ago than
``GRAPHFLOW_RETENTION_SECONDS``.

It runs in every process that executes runs (``graphflow serve``, ``graphflow worker``) when
the setting is given. Each round, every ``GRAPHFLOW_RETENTION_SWEEP_SECONDS``:

1. take the retention turn: on Postgres one process sweeps at a time (an advisory lock); a
   process that does not get it skips the round;
2. delete the runs that finished before now minus the retention period, in short batches
   (``service.storage.retention``): never an active or interrupted run, which has not
   finished;
3. on SQLite, give the freed pages back to the file system; log what was deleted.

A database error in a round is logged and the next round tries again; it never ends the thread.
``stop()`` ends the round in flight between two batches.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from service.settings import Settings
from service.storage.retention import RunRetention
from service.storage.sql import SqlRunStore
from service.storage.tables import utcnow

__all__ = ["RetentionSweeper", "sweeper_for"]

log = logging.getLogger("graphflow.service.retention")


def sweeper_for(store: SqlRunStore, settings: Settings) -> RetentionSweeper | None:
    """The sweeper a process should run: None when it executes no runs (``graphflow api``) or
    keeps runs forever (no ``GRAPHFLOW_RETENTION_SECONDS``)."""
    if not settings.role.executes or settings.retention_seconds is None:
        return None
    return RetentionSweeper(
        RunRetention(store), settings.retention_seconds, settings.retention_sweep_seconds
    )


class RetentionSweeper:
    """Sweeps ``retention``'s store every ``interval_seconds`` in a daemon thread:
    ``start()``, ``stop()``; ``sweep()`` is one round."""

    def __init__(
        self, retention: RunRetention, retention_seconds: float, interval_seconds: float
    ) -> None:
        self.retention = retention
        self.retention_seconds = retention_seconds
        self.interval_seconds = interval_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the sweeping thread; its first round starts at once.

        Raises:
            RuntimeError: it was started before.
        """
        if self._thread is not None:
            raise RuntimeError("this RetentionSweeper was started already")
        self._thread = threading.Thread(target=self._loop, name="graphflow-retention", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the batch in flight, waiting up to ``timeout`` seconds for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def sweep(self) -> int:
        """One round: delete the runs that finished before the retention period, if it is
        this process's turn; return how many were deleted."""
        with self.retention.turn() as mine:
            if not mine:
                return 0
            started = time.monotonic()
            before = utcnow() - timedelta(seconds=self.retention_seconds)
            deleted = self.retention.sweep(before, self._stop)
            if deleted == 0:
                return 0
            freed = self.retention.reclaim_space(self._stop)
        log.info(
            "retention: deleted %d runs that finished before %s (%.1f s; %d pages freed)",
            deleted,
            before.isoformat(timespec="seconds"),
            time.monotonic() - started,
            freed,
        )
        return deleted

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sweep()
            except Exception:
                log.exception("retention sweep failed; retrying in %g s", self.interval_seconds)
            self._stop.wait(self.interval_seconds)
