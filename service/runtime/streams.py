"""Run event streams: an in-process wake-up notifier plus DB replay.

The database is the source of truth. A stream loops: arm its wake-up, read the events with
``seq > last`` from the store, send them, stop after a terminal event, otherwise sleep until woken
(or a keep-alive timeout) and repeat. Arming before reading means no notification is lost and no
event is sent twice, whatever the timing of the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

import anyio.to_thread

from service.storage.base import RunStore
from service.storage.records import SETTLED, EventData, json_serializer

# Its own generator: a test that draws from the global one must not see it change.
_jitter = random.Random()

# The events after which a run rests: it ended, or it waits for a person. A stream ends after
# one, unless the run already went on (resumed or retried) past it.
SETTLING_EVENTS = frozenset(f"run_{status}" for status in SETTLED)


class Subscription:
    """One waiter of a run: an event set on every change, and, for a live stream, the events
    the journal writer delivered from memory since the stream last looked (in seq order)."""

    __slots__ = ("ended", "live", "wake")

    def __init__(self, live: bool) -> None:
        self.wake = asyncio.Event()
        self.live: deque[tuple[int, str, EventData]] | None = deque() if live else None
        self.ended = False  # the journal stored the run's end (no need to read its status)


class Notifier:
    """Wakes asyncio waiters of a run from any thread. Waiters hold no resources once gone.

    A waiter subscribes to every change of a run (a stream, which also gets the committed
    events themselves, so that tailing a live run reads nothing) or only to its end (a client
    waiting for the result).
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, set[Subscription]] = {}
        self._end_waiters: dict[str, set[Subscription]] = {}
        self._lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @contextlib.contextmanager
    def subscribe(
        self, run_id: str, *, end_only: bool = False, live: bool = False
    ) -> Iterator[Subscription]:
        """A subscription woken whenever ``run_id`` changes (or, with ``end_only``, when it may
        have ended); with ``live``, it also collects the events stored meanwhile. Removed on
        exit (including cancellation)."""
        table = self._end_waiters if end_only else self._waiters
        subscription = Subscription(live)
        with self._lock:
            table.setdefault(run_id, set()).add(subscription)
        try:
            yield subscription
        finally:
            with self._lock:
                waiters = table.get(run_id)
                if waiters is not None:
                    waiters.discard(subscription)
                    if not waiters:
                        del table[run_id]

    def subscriber_count(self, run_id: str | None = None) -> int:
        with self._lock:
            tables = (self._waiters, self._end_waiters)
            if run_id is not None:
                return sum(len(t.get(run_id, ())) for t in tables)
            return sum(len(w) for t in tables for w in t.values())

    def notify(self, run_id: str) -> None:
        """Thread-safe: wake everyone waiting on ``run_id``, for any change or its end (which
        they then read from the store: it may or may not have ended)."""
        self.notify_many((run_id,), (), maybe_ended=(run_id,))

    def notify_many(
        self,
        changed: Iterable[str],
        ended: Iterable[str] = (),
        events: Mapping[str, list[tuple[int, str, EventData]]] | None = None,
        maybe_ended: Iterable[str] = (),
    ) -> None:
        """Thread-safe: wake the waiters of every run in ``changed`` (handing live streams the
        run's newly stored ``events``), and the end waiters of every run in ``ended`` (whose
        end is stored) or ``maybe_ended``, with one wake-up of the event loop."""
        loop = self._loop
        deliveries: list[tuple[Subscription, list[Any] | None]] = []
        with self._lock:
            for run_id in changed:
                stored = (events or {}).get(run_id, [])
                deliveries += [(sub, stored) for sub in self._waiters.get(run_id, ())]
            for run_id in ended:
                deliveries += [(sub, None) for sub in self._end_waiters.get(run_id, ())]
            for run_id in maybe_ended:
                deliveries += [(sub, []) for sub in self._end_waiters.get(run_id, ())]
        if loop is None or not deliveries or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            loop.call_soon_threadsafe(_deliver, deliveries)


def _deliver(deliveries: list[tuple[Subscription, list[Any] | None]]) -> None:
    for subscription, events in deliveries:
        if events is None:
            subscription.ended = True
        elif subscription.live is not None:
            subscription.live.extend(events)
        subscription.wake.set()


def _sse(seq: int, type_: str, data: EventData) -> dict[str, Any]:
    return {"id": str(seq), "event": type_, "data": json_serializer(data)}


async def run_event_stream(
    store: RunStore, notifier: Notifier, run_id: str, after: int, poll_seconds: float
) -> AsyncIterator[dict[str, Any]]:
    """Yield SSE dicts for events of ``run_id`` with seq > ``after`` until the run settles: its
    terminal event, or ``run_interrupted``. A settling event the run has gone on from (it was
    resumed or retried since) does not end the stream; a client that wants to follow a run
    after resuming or retrying it reconnects with ``Last-Event-ID``.

    Ends at once when the run had already settled at or before ``after`` (a resume past it).
    Live events come from memory when they continue exactly where the stream is (``seq ==
    last + 1``); anything else (the replay, a gap, events stored outside the journal) is read
    from the store.
    """
    last = after
    with notifier.subscribe(run_id, live=True) as subscription:
        live = subscription.live
        assert live is not None
        read_store = True  # the replay first
        while True:
            subscription.wake.clear()
            while live and live[0][0] <= last:
                live.popleft()
            if live and live[0][0] == last + 1:
                while live and live[0][0] == last + 1:
                    seq, type_, data = live.popleft()
                    last = seq
                    yield _sse(seq, type_, data)
                    if type_ in SETTLING_EVENTS:
                        return
                continue
            if read_store or live:  # the replay, a gap, or events stored outside the journal
                # Status before events: the terminal event is stored with the status, so an
                # ended run seen here has its terminal event among those read next or at or
                # before ``last``.
                run = await anyio.to_thread.run_sync(store.get_run, run_id)
                ended = run is None or run.status in SETTLED
                events = await anyio.to_thread.run_sync(store.events_after, run_id, last)
                for ev in events:
                    last = ev.seq
                    yield _sse(ev.seq, ev.type, ev.data)
                    if ev.type in SETTLING_EVENTS and (run is None or ev.seq >= run.last_seq):
                        return
                if events:
                    continue  # there may be more than one page
                if ended:
                    return
                read_store = False
                if live:
                    continue  # delivered while we read
            try:
                # Jittered: streams of one moment do not all read the store at once.
                timeout = poll_seconds * _jitter.uniform(0.5, 1.0)
                await asyncio.wait_for(subscription.wake.wait(), timeout=timeout)
            except TimeoutError:
                read_store = True  # nothing woke us: look at the store all the same
            else:
                # A wake-up without the next event in memory (say, a cancel stored outside
                # the journal) is read from the store.
                read_store = not (live and live[0][0] <= last + 1)


async def wait_until_finished(
    store: RunStore,
    notifier: Notifier,
    run_id: str,
    timeout: float,
    *,
    active: bool = False,
    poll_seconds: float = 1.0,
) -> bool:
    """Wait until the run settles (it ends, or is interrupted) or ``timeout`` passes; True
    when it settled.

    ``active``: the caller knows the run has not ended yet (it just created it), so the first
    look at the store is skipped. An end the journal stored is taken as it is, without a read.
    Without a wake-up, the store is read every ``poll_seconds`` (a run executed elsewhere
    whose notice was lost).
    """
    deadline = asyncio.get_running_loop().time() + timeout
    with notifier.subscribe(run_id, end_only=True) as subscription:
        wake = subscription.wake
        look = not active
        while True:
            wake.clear()
            if subscription.ended:
                return True
            if look:
                run = await anyio.to_thread.run_sync(store.get_run, run_id)
                if run is None or run.status in SETTLED:
                    return True
            look = True
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=min(remaining, poll_seconds))
