"""Claims of runs queued for any worker (``graphflow api`` creates them with no owner).

One thread per executing process claims queued runs into its free run slots, oldest first
(``RunStore.claim_next``: ``FOR UPDATE SKIP LOCKED`` on Postgres). It claims at once when woken,
by a ``QUEUED`` notice or by a slot freed while runs were waiting, and otherwise every
``poll_seconds`` (jittered), so a lost notice delays a run by at most that.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

from service.storage.base import RunStore
from service.storage.tables import Run

# Its own generator: a test that draws from the global one must not see it change.
_jitter = random.Random()

log = logging.getLogger("graphflow.service.claims")


class QueuedRunClaimer:
    """Claims queued runs while ``free_slots()`` is positive and hands each to ``hand_over``."""

    def __init__(
        self,
        store: RunStore,
        owner_id: str,
        *,
        lease_seconds: float,
        poll_seconds: float,
        free_slots: Callable[[], int],
        hand_over: Callable[[Run], None],
    ) -> None:
        self.store = store
        self.owner_id = owner_id
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self._free_slots = free_slots
        self._hand_over = hand_over
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._backlog = True  # queued runs may be waiting: claim when a slot frees
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="graphflow-claims", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def queued(self) -> None:
        """Runs were queued (a notice): claim now."""
        self._backlog = True
        self._wake.set()

    def slot_freed(self) -> None:
        """A run ended here: claim the next one now if runs were waiting."""
        if self._backlog:
            self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._claim_into_free_slots()
            except Exception:
                log.exception("claiming queued runs failed; trying again")
            self._wake.wait(self.poll_seconds * _jitter.uniform(0.5, 1.0))
            self._wake.clear()

    def _claim_into_free_slots(self) -> None:
        while not self._stop.is_set():
            free = self._free_slots()
            if free <= 0:
                return  # ``slot_freed`` wakes us
            runs = self.store.claim_next(self.owner_id, self.lease_seconds, free)
            self._backlog = len(runs) == free  # a full claim: more may be waiting
            for run in runs:
                self._hand_over(run)
            if not self._backlog:
                return
