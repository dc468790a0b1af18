"""The cap on open event streams (503 with ``Retry-After``, naming the cap and its setting).

The cap on active runs (429) is checked where runs are stored: see ``JournalBatch``.
"""

from __future__ import annotations

import threading

from sse_starlette import EventSourceResponse
from starlette.types import Receive, Scope, Send

from service.errors import TooManyStreamsError


class StreamSlots:
    """A per-process count of open event streams, bounded by ``limit`` (thread-safe)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open = 0
        self._lock = threading.Lock()

    @property
    def open(self) -> int:
        with self._lock:
            return self._open

    def acquire(self) -> StreamSlot:
        """Take a slot; raise ``TooManyStreamsError`` when all ``limit`` are taken."""
        with self._lock:
            if self._open >= self.limit:
                raise TooManyStreamsError(self.limit)
            self._open += 1
        return StreamSlot(self)

    def _release(self) -> None:
        with self._lock:
            self._open -= 1


class StreamSlot:
    """One taken slot; ``release`` is idempotent."""

    def __init__(self, slots: StreamSlots) -> None:
        self._slots: StreamSlots | None = slots

    def release(self) -> None:
        slots, self._slots = self._slots, None
        if slots is not None:
            slots._release()


class SlotEventSourceResponse(EventSourceResponse):
    """An SSE response that gives its stream slot back however the response ends.

    Released here rather than in the event generator: a generator that never starts (HEAD, a
    client gone before the first event) never runs its ``finally``.
    """

    def __init__(self, *args: object, slot: StreamSlot, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()
