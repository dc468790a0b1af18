"""Small helper factories shared by the engine tests.

Everything here is plain Python: thread-safe call logs, a concurrency probe, and node
factories. Tests build their own graphs with them; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest


class CallLog:
    """Thread-safe record of node calls: order, counts, start/end times and the state seen."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.order: list[str] = []
        self.counts: Counter[str] = Counter()
        self.started: dict[str, list[float]] = {}
        self.ended: dict[str, list[float]] = {}
        self.seen: dict[str, list[dict[str, Any]]] = {}

    def start(self, name: str, state: Any) -> None:
        snapshot = dict(state) if isinstance(state, dict) else state
        with self._lock:
            self.order.append(name)
            self.counts[name] += 1
            self.started.setdefault(name, []).append(time.monotonic())
            self.seen.setdefault(name, []).append(snapshot)

    def end(self, name: str) -> None:
        with self._lock:
            self.ended.setdefault(name, []).append(time.monotonic())


class ConcurrencyProbe:
    """Counts how many node functions are inside `running()` at once (lock-protected)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current = 0
        self.max_seen = 0

    @contextmanager
    def running(self) -> Iterator[None]:
        with self._lock:
            self.current += 1
            self.max_seen = max(self.max_seen, self.current)
        try:
            yield
        finally:
            with self._lock:
                self.current -= 1


def appender(
    name: str,
    *,
    key: str = "results",
    delay: float = 0.0,
    log: CallLog | None = None,
    probe: ConcurrencyProbe | None = None,
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A sync node that (optionally) sleeps, then appends its name to `state[key]`."""

    def node(state: dict[str, Any]) -> dict[str, Any]:
        if log is not None:
            log.start(name, state)
        if probe is not None:
            with probe.running():
                time.sleep(delay)
        elif delay:
            time.sleep(delay)
        if log is not None:
            log.end(name)
        return {key: [name]}

    node.__name__ = f"append_{name}"
    return node


def async_appender(
    name: str, *, key: str = "results", delay: float = 0.0, log: CallLog | None = None
) -> Callable[[dict[str, Any]], Any]:
    """An `async def` node that awaits `asyncio.sleep(delay)`, then appends its name."""

    async def node(state: dict[str, Any]) -> dict[str, Any]:
        if log is not None:
            log.start(name, state)
        await asyncio.sleep(delay)
        if log is not None:
            log.end(name)
        return {key: [name]}

    node.__name__ = f"async_append_{name}"
    return node


@pytest.fixture
def call_log() -> CallLog:
    return CallLog()


@pytest.fixture
def probe() -> ConcurrencyProbe:
    return ConcurrencyProbe()


@pytest.fixture
def make_appender() -> Callable[..., Callable[[dict[str, Any]], dict[str, Any]]]:
    """Factory fixture: `make_appender("a", delay=0.1, log=call_log)`."""
    return appender


@pytest.fixture
def make_async_appender() -> Callable[..., Callable[[dict[str, Any]], Any]]:
    """Factory fixture: `make_async_appender("a", delay=0.1)`."""
    return async_appender


@pytest.fixture
def collected_events() -> tuple[list[Any], Callable[[Any], None]]:
    """A list and an `on_event` callback that appends to it."""
    events: list[Any] = []
    return events, events.append
