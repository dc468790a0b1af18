"""Run event streams: an in-process wake-up notifier plus DB replay.

The database is the source of truth. A stream loops: arm its wake-up, read the events with
``seq > last`` from the store, send them, stop after a terminal event, otherwise sleep until woken
(or a keep-alive timeout) and repeat. Arming before reading means no notification is lost and no
event is sent twice, whatever the timing of the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import anyio.to_thread

from service.storage.base import RunStore
from service.storage.records import TERMINAL

TERMINAL_EVENTS = frozenset({"run_succeeded", "run_failed", "run_cancelled"})


class Notifier:
    """Wakes asyncio waiters of a run from any thread. Waiters hold no resources once gone.

    A waiter subscribes to every change of a run (a stream) or only to its end (a client
    waiting for the result): the journal writer says which runs of a batch ended, so waiting
    for the result costs no read per event.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._end_waiters: dict[str, set[asyncio.Event]] = {}
        self._lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @contextlib.contextmanager
    def subscribe(self, run_id: str, *, end_only: bool = False) -> Iterator[asyncio.Event]:
        """An event set whenever ``run_id`` changes (or, with ``end_only``, when it may have
        ended); removed on exit (including cancellation)."""
        table = self._end_waiters if end_only else self._waiters
        event = asyncio.Event()
        with self._lock:
            table.setdefault(run_id, set()).add(event)
        try:
            yield event
        finally:
            with self._lock:
                waiters = table.get(run_id)
                if waiters is not None:
                    waiters.discard(event)
                    if not waiters:
                        del table[run_id]

    def subscriber_count(self, run_id: str | None = None) -> int:
        with self._lock:
            tables = (self._waiters, self._end_waiters)
            if run_id is not None:
                return sum(len(t.get(run_id, ())) for t in tables)
            return sum(len(w) for t in tables for w in t.values())

    def notify(self, run_id: str) -> None:
        """Thread-safe: wake everyone waiting on ``run_id``, for any change or its end."""
        self.notify_many((run_id,), (run_id,))

    def notify_many(self, changed: Iterable[str], ended: Iterable[str] = ()) -> None:
        """Thread-safe: wake the waiters of every run in ``changed`` and the end waiters of
        every run in ``ended``, with one wake-up of the event loop."""
        loop = self._loop
        with self._lock:
            events = [event for run_id in changed for event in self._waiters.get(run_id, ())]
            events += [event for run_id in ended for event in self._end_waiters.get(run_id, ())]
        if loop is None or not events or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            loop.call_soon_threadsafe(_set_all, events)


def _set_all(events: list[asyncio.Event]) -> None:
    for event in events:
        event.set()


async def run_event_stream(
    store: RunStore, notifier: Notifier, run_id: str, after: int, poll_seconds: float
) -> AsyncIterator[dict[str, Any]]:
    """Yield SSE dicts for events of ``run_id`` with seq > ``after`` until the terminal event.

    Ends at once when the run had already ended at or before ``after`` (a resume past the end).
    """
    last = after
    with notifier.subscribe(run_id) as wake:
        while True:
            wake.clear()
            # Status before events: the terminal event is stored with the status, so an ended
            # run seen here has its terminal event among those read next or at/before ``last``.
            run = await anyio.to_thread.run_sync(store.get_run, run_id)
            ended = run is None or run.status in TERMINAL
            events = await anyio.to_thread.run_sync(store.events_after, run_id, last)
            for ev in events:
                last = ev.seq
                yield {"id": str(ev.seq), "event": ev.type, "data": json.dumps(ev.data)}
                if ev.type in TERMINAL_EVENTS:
                    return
            if events:
                continue  # there may be more than one page
            if ended:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=poll_seconds)


async def wait_until_finished(
    store: RunStore, notifier: Notifier, run_id: str, timeout: float
) -> bool:
    """Wait until the run is terminal or ``timeout`` passes; True when it finished."""
    deadline = asyncio.get_running_loop().time() + timeout
    with notifier.subscribe(run_id, end_only=True) as wake:
        while True:
            wake.clear()
            run = await anyio.to_thread.run_sync(store.get_run, run_id)
            if run is None or run.status in TERMINAL:
                return True
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=min(remaining, 1.0))
