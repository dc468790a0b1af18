"""The stream-and-drop phase: many clients open run event streams and go away impolitely.

Clients are spread over finished and still-running runs and take one of three ways out:
``read_some`` reads one to three events and closes; ``no_read`` waits for the response headers,
stalls for a moment without reading and closes; ``abrupt`` writes the raw request on a socket and
closes it before any answer. Afterwards the server should hold no more fds than before.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httpx

from bench.loadgen import MAX_THROTTLED_RETRIES, is_backpressure, iter_sse, retry_after

MODES = ("read_some", "read_some", "no_read", "abrupt")


@dataclass
class DropResult:
    """How many clients dropped in each way, and what went wrong."""

    clients: int = 0
    by_mode: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MODES, 0))
    events_read: int = 0
    throttled: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)


class StreamDropper:
    """Opens ``clients`` streams at once, alternating running and finished runs, and drops them.

    Consecutive groups of ``len(MODES)`` clients alternate between the two kinds of run, so each
    way of dropping meets both.
    """

    def __init__(
        self,
        base_url: str,
        *,
        running: list[str],
        finished: list[str],
        clients: int,
        time_limit: float,
    ) -> None:
        if not running or not finished:
            raise ValueError("stream-and-drop needs running and finished runs to stream")
        self.base_url = base_url
        self.pools = (running, finished)
        self.clients = clients
        self.time_limit = time_limit
        self.result = DropResult(clients=clients)

    async def run(self) -> DropResult:
        limits = httpx.Limits(max_connections=self.clients, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=self.base_url, limits=limits, timeout=30) as client:
            async with asyncio.timeout(self.time_limit):
                await asyncio.gather(*(self._one(client, i) for i in range(self.clients)))
        return self.result

    def _error(self, message: str) -> None:
        self.result.errors += 1
        if len(self.result.error_samples) < 5:
            self.result.error_samples.append(message[:300])

    async def _one(self, client: httpx.AsyncClient, i: int) -> None:
        mode = MODES[i % len(MODES)]
        group = i // len(MODES)
        pool = self.pools[group % 2]
        path = f"/runs/{pool[(group // 2) % len(pool)]}/events"
        try:
            if mode == "abrupt":
                await self._abrupt(path)
            else:
                await self._open_and_drop(client, path, mode, i)
            self.result.by_mode[mode] += 1
        except (OSError, httpx.HTTPError) as exc:
            self._error(f"{mode} {path}: {type(exc).__name__}: {exc}")

    async def _open_and_drop(self, client: httpx.AsyncClient, path: str, mode: str, i: int) -> None:
        for _ in range(MAX_THROTTLED_RETRIES):
            async with client.stream("GET", path) as response:
                if is_backpressure(response):
                    self.result.throttled += 1
                    delay = retry_after(response)
                elif response.status_code != 200:
                    self._error(f"{mode} {path}: {response.status_code}")
                    return
                elif mode == "read_some":
                    wanted = 1 + i % 3
                    async for _event in iter_sse(response):
                        self.result.events_read += 1
                        wanted -= 1
                        if wanted == 0:
                            break
                    return
                else:
                    await asyncio.sleep(0.05 * (i % 10))  # unread events pile up meanwhile
                    return
            await asyncio.sleep(delay)
        self._error(f"{mode} {path}: still throttled after the retry limit")

    async def _abrupt(self, path: str) -> None:
        url = httpx.URL(self.base_url)
        reader, writer = await asyncio.open_connection(url.host, url.port)
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        )
        writer.write(request.encode())
        await writer.drain()
        writer.close()
        await writer.wait_closed()


async def wait_for_runs(
    client: httpx.AsyncClient, run_ids: list[str], statuses: frozenset[str], timeout: float
) -> dict[str, str]:
    """Poll the runs until each has one of ``statuses`` or ``timeout`` passes; last statuses."""
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    while True:
        for run_id in run_ids:
            seen[run_id] = (await client.get(f"/runs/{run_id}")).json()["status"]
        if all(s in statuses for s in seen.values()) or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.1)
