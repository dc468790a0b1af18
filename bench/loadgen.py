"""The client side of a load run: mixed guide-workflow runs created by many clients, SSE readers.

``LoadGenerator`` creates ``runs`` runs from ``clients`` concurrent workers and streams the events
of ``streams`` of them while the load goes on. Back-pressure (429, or 503 with ``Retry-After``)
is retried after ``Retry-After`` and counted apart from errors. Every loop is bounded in count and
time. The stream-and-drop phase lives in ``bench/loaddrop.py``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

WORKFLOWS = (
    "basic_fanout",
    "pipeline",
    "conditional_router",
    "map_reduce",
    "resilient_processor",
    "advanced_workflow",
)
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
TERMINAL_EVENTS = frozenset({"run_succeeded", "run_failed", "run_cancelled"})
LOCKED = "database is locked"
MAX_THROTTLED_RETRIES = 1000
# How long a reader holds its first stream open waiting for the other readers to open theirs.
ALL_OPEN_WAIT_SECONDS = 10.0
_CONTENT_TYPES = ("text", "image", "audio", "unknown")


def workload(i: int) -> tuple[str, dict[str, Any]]:
    """The graph and a small valid input of run ``i``; the mix cycles through every workflow.

    Batch sizes vary (2–6 items) so both the small and the large paths of the routing
    workflows run; delays are tiny so the load measures the service, not the sleeps.
    """
    graph = WORKFLOWS[i % len(WORKFLOWS)]
    items = [f"item-{i}-{k}" for k in range(2 + i % 5)]
    inputs: dict[str, dict[str, Any]] = {
        "basic_fanout": {"work_items": items, "delay_scale": 0.002},
        "pipeline": {"raw_input": f"  load   run {i}  "},
        "conditional_router": {
            "type": _CONTENT_TYPES[(i // len(WORKFLOWS)) % len(_CONTENT_TYPES)],
            "content": f"a great load test, run {i}",
        },
        "map_reduce": {"items": items, "parallel_threshold": 3},
        "resilient_processor": {"failure_rate": 0.5, "seed": i},
        "advanced_workflow": {
            "items": items,
            "large_batch_threshold": 3,
            "failure_rate": 0.3,
            "seed": i,
        },
    }
    return graph, inputs[graph]


def is_backpressure(response: httpx.Response) -> bool:
    """429 (too many runs), or 503 with ``Retry-After`` (too many open streams): come back later."""
    return response.status_code == 429 or (
        response.status_code == 503 and "retry-after" in response.headers
    )


def retry_after(response: httpx.Response) -> float:
    """Seconds to wait after back-pressure: ``Retry-After`` (clamped to 0.05–10 s) + jitter."""
    try:
        seconds = float(response.headers.get("retry-after", "1"))
    except ValueError:  # an HTTP date: not worth parsing for a loopback server
        seconds = 1.0
    return min(max(seconds, 0.05), 10.0) * random.uniform(1.0, 1.2)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0–1) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass(frozen=True)
class SseEvent:
    id: int | None
    event: str
    data: str


async def iter_sse(response: httpx.Response) -> AsyncIterator[SseEvent]:
    """Parse a text/event-stream body into events; comments (keep-alive pings) are skipped."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if fields:
                raw_id = fields.get("id")
                yield SseEvent(
                    id=int(raw_id) if raw_id else None,
                    event=fields.get("event", "message"),
                    data=fields.get("data", ""),
                )
            fields = {}
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(":")
        value = value.removeprefix(" ")
        fields[key] = f"{fields[key]}\n{value}" if key == "data" and key in fields else value


@dataclass
class StreamResult:
    """What one SSE reader of a run received."""

    run_id: str
    opened: bool = False
    ids: list[int] = field(default_factory=list)
    terminal: bool = False
    error: str | None = None


@dataclass
class LoadResult:
    """Raw measurements of the create-and-stream phase."""

    created: dict[str, str] = field(default_factory=dict)  # run id -> graph
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    throttled: int = 0
    locked_responses: int = 0
    streams: list[StreamResult] = field(default_factory=list)
    stream_throttled: int = 0
    peak_open_streams: int = 0
    started: float = 0.0
    posts_done: float = 0.0


class LoadGenerator:
    """Creates ``runs`` runs from ``clients`` workers while ``streams`` readers keep streams open.

    Each reader follows the newest run not yet streamed, live; when there is none it replays a
    random created run, so about ``streams`` streams stay open for as long as runs are created.
    Once creation ends, readers drain the newest unstreamed runs and stop.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        runs: int,
        clients: int,
        streams: int,
        time_limit: float,
    ) -> None:
        self.client = client
        self.runs = runs
        self.clients = clients
        self.time_limit = time_limit
        self.streams = streams
        self._indexes = iter(range(runs))
        # Only the newest ``streams`` unstreamed runs are kept: they are the ones still live.
        self._fresh: collections.deque[str] = collections.deque(maxlen=max(1, streams))
        self._wake = asyncio.Event()
        self._posting = True
        self._readers: list[asyncio.Task[None]] = []
        self._created_ids: list[str] = []
        self._open_streams = 0
        # Each reader keeps its first stream open until every reader has opened one, so that
        # all ``streams`` are open at once however fast the server finishes runs.
        self._first_opened: set[int] = set()
        self._all_opened = asyncio.Event()
        self._deadline = 0.0
        self.result = LoadResult()

    async def create_all(self) -> LoadResult:
        """Run the workers until every run is created (or refused); stream readers keep going."""
        self.result.started = time.monotonic()
        self._deadline = self.result.started + self.time_limit
        self._readers = [asyncio.create_task(self._reader()) for _ in range(self.streams)]
        workers = [asyncio.create_task(self._worker()) for _ in range(self.clients)]
        await asyncio.gather(*workers)
        self.result.posts_done = time.monotonic()
        self._posting = False
        self._wake.set()
        return self.result

    async def finish_streams(self) -> list[StreamResult]:
        """Wait for the stream readers (each stream bounded by the time limit)."""
        await asyncio.gather(*self._readers)
        return self.result.streams

    async def _reader(self) -> None:
        while (self._posting or self._fresh) and time.monotonic() < self._deadline:
            if self._fresh:
                run_id = self._fresh.pop()
            elif self._created_ids:
                run_id = self._created_ids[random.randrange(len(self._created_ids))]
            else:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)
                continue
            self.result.streams.append(await self._stream(run_id))

    def _error(self, message: str) -> None:
        self.result.errors += 1
        if LOCKED in message.lower():
            self.result.locked_responses += 1
        if len(self.result.error_samples) < 5:
            self.result.error_samples.append(message[:300])

    async def _worker(self) -> None:
        for i in self._indexes:  # shared iterator: each index is taken by exactly one worker
            await self._create(i)

    async def _create(self, i: int) -> None:
        graph, payload = workload(i)
        for _ in range(MAX_THROTTLED_RETRIES):
            if time.monotonic() > self._deadline:
                break
            t0 = time.perf_counter()
            try:
                response = await self.client.post(f"/graphs/{graph}/runs", json={"input": payload})
            except httpx.HTTPError as exc:
                self._error(f"POST {graph}: {type(exc).__name__}: {exc}")
                return
            if is_backpressure(response):
                self.result.throttled += 1
                await asyncio.sleep(retry_after(response))
                continue
            if response.status_code not in (200, 202):
                self._error(f"POST {graph}: {response.status_code} {response.text}")
                return
            self.result.latencies_ms.append((time.perf_counter() - t0) * 1000)
            run_id = response.json()["id"]
            self.result.created[run_id] = graph
            self._created_ids.append(run_id)
            self._fresh.append(run_id)
            self._wake.set()
            return
        self._error(f"POST {graph}: still throttled at the time limit")

    async def _stream(self, run_id: str) -> StreamResult:
        result = StreamResult(run_id)
        try:
            async with asyncio.timeout(max(1.0, self._deadline - time.monotonic())):
                await self._read_stream(result)
        except (TimeoutError, httpx.HTTPError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        return result

    async def _read_stream(self, result: StreamResult) -> None:
        for _ in range(MAX_THROTTLED_RETRIES):
            async with self.client.stream("GET", f"/runs/{result.run_id}/events") as response:
                if is_backpressure(response):
                    self.result.stream_throttled += 1
                    delay = retry_after(response)
                elif response.status_code != 200:
                    await response.aread()
                    result.error = f"GET events: {response.status_code} {response.text[:200]}"
                    return
                else:
                    await self._consume(result, response)
                    return
            await asyncio.sleep(delay)
        result.error = "stream still throttled after the retry limit"

    async def _consume(self, result: StreamResult, response: httpx.Response) -> None:
        result.opened = True
        self._open_streams += 1
        self.result.peak_open_streams = max(self.result.peak_open_streams, self._open_streams)
        try:
            reader = id(asyncio.current_task())
            if reader not in self._first_opened:
                self._first_opened.add(reader)
                if len(self._first_opened) >= self.streams:
                    self._all_opened.set()
                with contextlib.suppress(TimeoutError):  # bounded: a reader may find no run
                    await asyncio.wait_for(self._all_opened.wait(), ALL_OPEN_WAIT_SECONDS)
            async for event in iter_sse(response):
                if event.id is not None:
                    result.ids.append(event.id)
                if event.event in TERMINAL_EVENTS:
                    result.terminal = True
                    return
            result.error = "stream ended before the terminal event"
        finally:
            self._open_streams -= 1


async def wait_until_idle(client: httpx.AsyncClient, timeout: float) -> bool:
    """Poll until no run is queued or running (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            busy = False
            for status in ("queued", "running"):
                page = await client.get("/runs", params={"status": status, "limit": 1})
                busy = busy or bool(page.json()["items"])
            if not busy:
                return True
        except (httpx.HTTPError, ValueError, KeyError):
            pass  # a transient failure while polling is not the measurement; poll again
        await asyncio.sleep(0.2)
    return False


async def run_statuses(client: httpx.AsyncClient, max_runs: int) -> dict[str, str]:
    """Status of every run the server lists, paging through ``GET /runs`` (bounded)."""
    statuses: dict[str, str] = {}
    params: dict[str, Any] = {"limit": 100}
    for _ in range(max_runs // 100 + 10):
        page = (await client.get("/runs", params=params)).raise_for_status().json()
        statuses.update((item["id"], item["status"]) for item in page["items"])
        if not page["next_cursor"]:
            break
        params["cursor"] = page["next_cursor"]
    return statuses


@dataclass
class SseCheck:
    """Events missed, duplicated, out of order or unexpected across the streamed runs."""

    opened: int = 0
    missed: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    unexpected: int = 0
    unterminated: int = 0
    errors: list[str] = field(default_factory=list)


def expected_event_count(run: dict[str, Any]) -> int:
    """``run_started`` + a start and an end event per node attempt + the terminal event."""
    attempts: int = sum(node["attempt"] for node in run["nodes"])
    return 2 + 2 * attempts


async def check_streams(client: httpx.AsyncClient, streams: list[StreamResult]) -> SseCheck:
    """Compare each stream's event ids with exactly 1..N, N from the run's stored node runs."""
    check = SseCheck()
    limit = asyncio.Semaphore(20)

    async def fetch(run_id: str) -> dict[str, Any]:
        async with limit:
            run: dict[str, Any] = (await client.get(f"/runs/{run_id}")).raise_for_status().json()
            return run

    distinct = list(dict.fromkeys(s.run_id for s in streams))
    runs = dict(zip(distinct, await asyncio.gather(*map(fetch, distinct)), strict=True))
    for stream in streams:
        run = runs[stream.run_id]
        check.opened += stream.opened
        want = set(range(1, expected_event_count(run) + 1))
        got = set(stream.ids)
        check.missed += len(want - got)
        check.unexpected += len(got - want)
        check.duplicated += len(stream.ids) - len(got)
        check.out_of_order += stream.ids != sorted(stream.ids)
        check.unterminated += not stream.terminal
        if stream.error and len(check.errors) < 5:
            check.errors.append(f"{stream.run_id}: {stream.error}")
    return check
