"""A lean thread pool for node functions.

``concurrent.futures.ThreadPoolExecutor`` builds a ``Future`` and a work item per task, which
the engine never uses: outcomes come back through the driver's own queue. Dropping that cuts
dispatch cost per node by about 40% (see ``bench/engine_bench.py``). Threads start on demand,
up to ``max_threads``, stay for reuse, and are daemons so an abandoned (timed-out) node never
blocks interpreter exit.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any


class WorkerPool:
    """Runs ``fn(*args)`` on a pool thread. ``fn`` must report its own outcome."""

    def __init__(self, max_threads: int, name: str = "graphflow") -> None:
        self._tasks: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]]] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._max_threads = max_threads
        self._threads = 0
        self._idle = 0
        self._name = name

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        self._tasks.put((fn, args))
        with self._lock:
            if self._idle:
                self._idle -= 1  # that worker is now spoken for
                return
            if self._threads >= self._max_threads:
                return  # queued until a worker frees up
            self._threads += 1
            number = self._threads
        threading.Thread(target=self._work, name=f"{self._name}-{number}", daemon=True).start()

    def _work(self) -> None:
        get = self._tasks.get
        lock = self._lock
        while True:
            fn, args = get()
            fn(*args)
            with lock:
                self._idle += 1


async def call_in_thread(
    fn: Callable[..., Any], *args: Any, submit: Callable[..., None] | None = None
) -> Any:
    """Await ``fn(*args)`` run on another thread: via ``submit`` (a pool's), else a new one.

    Unlike ``asyncio.to_thread`` this does not share the loop's small default executor, so
    many concurrent runs never queue behind each other.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def call() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:
            loop.call_soon_threadsafe(settle, False, exc)
        else:
            loop.call_soon_threadsafe(settle, True, result)

    if submit is not None:
        submit(call)
    else:
        threading.Thread(target=call, name="graphflow-run", daemon=True).start()
    return await future
