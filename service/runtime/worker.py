"""``graphflow worker``: a process that executes runs and serves no HTTP.

It claims runs queued by ``graphflow api`` processes (and takes over those of dead processes)
into its ``GRAPHFLOW_MAX_CONCURRENT_RUNS`` slots, until SIGTERM or SIGINT; then it drains as
``graphflow serve`` does (a second signal cuts the grace period short). After each lease
renewal it touches ``GRAPHFLOW_HEALTH_FILE``: ``graphflow health`` checks its age.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
from types import FrameType

from service.observability import observers_for
from service.observability.metrics import serve_worker_metrics
from service.runtime.registry import discover
from service.runtime.runner import RunManager
from service.runtime.sweeper import sweeper_for
from service.settings import Settings
from service.storage.migrations import upgrade
from service.storage.sql import SqlRunStore
from service.webhooks import deliverer_for

log = logging.getLogger("graphflow.service.worker")


def run_worker(settings: Settings, stop: threading.Event | None = None) -> None:
    """Execute runs until ``stop`` is set (by SIGTERM or SIGINT when not given)."""
    hurry = threading.Event()
    if stop is None:
        stop = _stop_on_signals(hurry)
    store = SqlRunStore(
        settings.database_url, pool_size=settings.db_pool_size, announce_as=settings.owner_id
    )
    try:
        upgrade(store.write_engine)
        workflows = discover(settings.workflow_packages)
        observers = observers_for(settings)
        if settings.worker_metrics_port is not None:
            observers.append(serve_worker_metrics(settings))
        webhooks = deliverer_for(store, settings)  # None without GRAPHFLOW_WEBHOOK_SECRET
        runner = RunManager(
            store,
            workflows,
            settings,
            _no_streams,
            observers=observers,
            wake_webhooks=None if webhooks is None else webhooks.wake,
        )
        runner.start()
        if webhooks is not None:
            webhooks.start()
        sweeper = sweeper_for(store, settings)  # None without GRAPHFLOW_RETENTION_SECONDS
        if sweeper is not None:
            sweeper.start()
        gc.freeze()  # start-up objects leave the collector's full passes (see ``service.app``)
        log.info("worker %s started: %d run slots", settings.owner_id, settings.max_concurrent_runs)
        stop.wait()
        log.info("worker %s stopping", settings.owner_id)
        threading.Thread(target=_hurry_when, args=(hurry, runner), daemon=True).start()
        if sweeper is not None:
            sweeper.stop()
        runner.stop(settings.shutdown_grace_seconds)
        if webhooks is not None:
            webhooks.stop()
    finally:
        store.close()


def _hurry_when(hurry: threading.Event, runner: RunManager) -> None:
    hurry.wait()
    runner.hurry()


def _no_streams(_run_id: str) -> None:
    """A worker has no streams of its own: other processes learn of changes by notices."""


def _stop_on_signals(hurry: threading.Event) -> threading.Event:
    """An event set by the first SIGTERM or SIGINT; a second one sets ``hurry``."""
    stop = threading.Event()

    def handle(_signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            hurry.set()
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop
