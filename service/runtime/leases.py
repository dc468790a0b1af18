"""Lease heartbeats: a process keeps the runs it executes by renewing their leases.

Every run row names its owner and a lease expiry. The owner renews the leases of all its active
runs every ``interval`` seconds; a process that dies stops renewing, and once the lease has
expired any other process may take the run over and resume it from its journal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from service.storage.base import RunStore
from service.storage.records import LeaseRenewal

log = logging.getLogger("graphflow.service.leases")


class LeaseKeeper:
    """Renews one owner's leases in a daemon thread and reports what each renewal found.

    After each successful renewal ``on_renewal`` gets the ``LeaseRenewal`` (runs still ours,
    cancel requests). When renewals have failed for longer than a lease (the database is
    unreachable), ``on_expired`` is called: other processes may own our runs by now. ``on_tick``
    runs after every round, renewal failed or not (the runner takes over orphaned runs there).
    Callback exceptions are logged, never raised into the thread.
    """

    def __init__(
        self,
        store: RunStore,
        owner_id: str,
        *,
        lease_seconds: float,
        interval: float,
        on_renewal: Callable[[LeaseRenewal], None],
        on_expired: Callable[[], None],
        on_tick: Callable[[], object],
    ) -> None:
        self.store = store
        self.owner_id = owner_id
        self.lease_seconds = lease_seconds
        self.interval = interval
        self._on_renewal = on_renewal
        self._on_expired = on_expired
        self._on_tick = on_tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._renewed_at = time.monotonic()

    def start(self) -> None:
        """Start the heartbeat thread (the first beat comes after one interval)."""
        self._renewed_at = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="graphflow-leases", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop renewing (our leases then expire unless released) and wait for the thread."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def beat(self) -> None:
        """One round: renew, report, then tick."""
        started = time.monotonic()
        try:
            renewal = self.store.heartbeat(self.owner_id, self.lease_seconds)
        except Exception:
            log.exception("lease renewal failed")
            if time.monotonic() - self._renewed_at > self.lease_seconds:
                self._call(self._on_expired)
        else:
            # The new lease counts from before the statement ran: that bound is safe.
            self._renewed_at = started
            self._call(self._on_renewal, renewal)
        self._call(self._on_tick)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    @staticmethod
    def _call(fn: Callable[..., object], *args: object) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("lease callback %s failed", getattr(fn, "__name__", fn))
