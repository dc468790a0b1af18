"""One complete load run against one database, shared by the benchmark and the slow test.

``run_scenario`` starts a server, warms it up, takes a baseline of its RSS/fds/threads, runs the
create-and-stream load, checks every run and stream, waits for the process to come back to its
baseline, runs the stream-and-drop phase, waits again, stops the server and (SQLite) checks the
file's integrity. The ``Report`` it returns holds every number and its target.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.loaddrop import DropResult, StreamDropper, wait_for_runs
from bench.loadgen import (
    LOCKED,
    TERMINAL_STATUSES,
    LoadGenerator,
    LoadResult,
    SseCheck,
    check_streams,
    expected_event_count,
    percentile,
    run_statuses,
    wait_until_idle,
)
from bench.loadserver import (
    ProcStats,
    ServerProcess,
    generous_caps,
    serve,
    sqlite_file,
    sqlite_integrity,
)

# basic_fanout's slowest processor sleeps 0.5 s x delay_scale: these runs last about 4 s.
LONG_RUN_INPUT = {"work_items": ["slow-1", "slow-2"], "delay_scale": 8.0}


@dataclass(frozen=True)
class Tolerance:
    """How close to the baseline "back to baseline" is.

    Memory and fds are compared with the baseline; threads are only reported. The engine keeps
    a bounded worker pool per graph and the server a bounded thread pool, both growing to their
    peak use and staying, so thread counts say little; a leaked stream shows as a leaked socket.
    """

    rss_mb: float = 25.0
    rss_ratio: float = 0.20
    fds: int = 10

    def within(self, now: ProcStats, base: ProcStats) -> bool:
        rss_slack_kb = max(self.rss_mb * 1024, self.rss_ratio * base.rss_kb)
        return now.rss_kb <= base.rss_kb + rss_slack_kb and now.fds <= base.fds + self.fds


@dataclass(frozen=True)
class LoadConfig:
    """The shape of a load run; the defaults are the issue's numbers."""

    runs: int = 5000
    clients: int = 200
    streams: int = 200
    drop_clients: int = 500
    long_runs: int = 4
    max_concurrent_runs: int = 8
    settle_target: float = 30.0
    settle_limit: float = 60.0  # watch a little past the target to report how far off it is
    finish_timeout: float | None = None  # default: scales with runs
    tolerance: Tolerance = field(default_factory=Tolerance)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def load_time_limit(self) -> float:
        return self.finish_timeout or max(120.0, self.runs * 0.12)


@dataclass
class Settle:
    """Seconds until the process came back within tolerance (None: not within the limit)."""

    seconds: float | None
    final: ProcStats


@dataclass
class DropOutcome:
    """The stream-and-drop phase: the droppers, the runs they streamed, server stats before it."""

    drop: DropResult
    long_runs_ok: bool
    replay_ok: bool
    before: ProcStats


@dataclass
class Report:
    """Every measurement of one scenario; ``rows`` turns them into (metric, value, target, met)."""

    backend: str
    config: LoadConfig
    server_env: dict[str, str]
    load: LoadResult
    elapsed: float
    lost: list[str]
    not_succeeded: int
    sse: SseCheck
    baseline: ProcStats
    peak: ProcStats
    after_load: Settle
    dropped: DropOutcome
    after_drop: Settle
    locked_in_log: int = 0
    integrity: str | None = None  # None for Postgres

    @property
    def created(self) -> int:
        return len(self.load.created)

    @property
    def runs_per_second(self) -> float:
        return self.created / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def locked(self) -> int:
        return self.locked_in_log + self.load.locked_responses

    def failures(self) -> list[str]:
        """The targets this run missed, as readable lines (empty when all are met)."""
        return [
            f"{name}: {value} (target {want})" for name, value, want, ok in rows(self) if not ok
        ]

    def table(self) -> str:
        cells = [("metric", "value", "target", "ok")]
        cells += [(m, v, t, "yes" if ok else "NO") for m, v, t, ok in rows(self)]
        widths = [max(len(row[c]) for row in cells) for c in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
        return "\n".join([f"== {self.backend} ==", *lines])


def _stats(s: ProcStats) -> str:
    return f"{s.rss_mb:.1f} MB / {s.fds} fds / {s.threads} threads"


def _settle_row(name: str, settle: Settle, target: float) -> tuple[str, str, str, bool]:
    value = "not within limit" if settle.seconds is None else f"{settle.seconds:.1f} s"
    ok = settle.seconds is not None and settle.seconds <= target
    return (name, value, f"<= {target:.0f} s", ok)


def rows(r: Report) -> list[tuple[str, str, str, bool]]:
    """(metric, value, target, met) of every line of the printed table."""
    cfg, load, sse, drop = r.config, r.load, r.sse, r.dropped.drop
    lat = load.latencies_ms
    modes = "/".join(str(n) for n in drop.by_mode.values())
    sse_order = sse.out_of_order + sse.unexpected + sse.unterminated
    threads_before, threads_after = r.dropped.before.threads, r.after_drop.final.threads
    return [
        ("runs created", f"{r.created}/{cfg.runs}", str(cfg.runs), r.created == cfg.runs),
        ("runs/s (create -> all finished)", f"{r.runs_per_second:.1f}", "-", True),
        ("load wall time", f"{r.elapsed:.1f} s", "-", True),
        (
            "POST p50 / p95 ms",
            f"{percentile(lat, 0.5):.1f} / {percentile(lat, 0.95):.1f}",
            "-",
            True,
        ),
        ("errors (non-2xx but back-pressure, exc.)", str(load.errors), "0", load.errors == 0),
        (
            "back-pressure 429/503 POST / SSE",
            f"{load.throttled} / {load.stream_throttled}",
            "-",
            True,
        ),
        ("runs lost (missing or not terminal)", str(len(r.lost)), "0", not r.lost),
        ("runs not succeeded", str(r.not_succeeded), "0", r.not_succeeded == 0),
        ("'database is locked' (log + responses)", str(r.locked), "0", r.locked == 0),
        (
            "SSE streams opened (all) / peak open",
            f"{sse.opened} ({len(load.streams)}) / {load.peak_open_streams}",
            # Readers hop from a finished run's stream to the next run's, so the count open at
            # one instant dips below the number of readers; every open must succeed.
            f"all / {cfg.streams} readers",
            sse.opened == len(load.streams),
        ),
        (
            "SSE events missed / duplicated",
            f"{sse.missed} / {sse.duplicated}",
            "0 / 0",
            sse.missed + sse.duplicated == 0,
        ),
        (
            "SSE out of order / unexpected / no end",
            f"{sse.out_of_order} / {sse.unexpected} / {sse.unterminated}",
            "0 / 0 / 0",
            sse_order == 0,
        ),
        ("server baseline (after warm-up)", _stats(r.baseline), "-", True),
        ("server peak", _stats(r.peak), "-", True),
        _settle_row("after load: RSS+fds back in", r.after_load, cfg.settle_target),
        ("after load: final", _stats(r.after_load.final), "-", True),
        (
            "drop clients (read_some/no_read/abrupt)",
            f"{drop.clients} ({modes})",
            str(cfg.drop_clients),
            sum(drop.by_mode.values()) == cfg.drop_clients,
        ),
        (
            "drop errors / back-pressure",
            f"{drop.errors} / {drop.throttled}",
            "0 / -",
            drop.errors == 0,
        ),
        (
            "runs streamed during drop succeeded",
            str(r.dropped.long_runs_ok),
            "True",
            r.dropped.long_runs_ok,
        ),
        ("full replay after drop intact", str(r.dropped.replay_ok), "True", r.dropped.replay_ok),
        _settle_row("after drop: RSS+fds back in", r.after_drop, cfg.settle_target),
        ("after drop: final", _stats(r.after_drop.final), "-", True),
        ("threads before drop / after drop", f"{threads_before} / {threads_after}", "-", True),
        (
            "PRAGMA integrity_check",
            r.integrity or "n/a",
            "-" if r.integrity is None else "ok",
            r.integrity in (None, "ok"),
        ),
    ]


def server_env(config: LoadConfig) -> dict[str, str]:
    env = {
        "GRAPHFLOW_MAX_CONCURRENT_RUNS": str(config.max_concurrent_runs),
        "GRAPHFLOW_SSE_KEEPALIVE_SECONDS": "5",
        "GRAPHFLOW_SHUTDOWN_GRACE_SECONDS": "2",
    }
    env.update(
        generous_caps(config.runs + config.clients, config.streams + config.drop_clients + 100)
    )
    env.update(config.extra_env)
    return env


def run_scenario(backend: str, database_url: str, config: LoadConfig, workdir: Path) -> Report:
    """Run the whole scenario against a fresh database at ``database_url``."""
    env = server_env(config)
    with serve(database_url, workdir / f"server-{backend}.log", env) as server:
        report = asyncio.run(_drive(backend, server, config, env))
        server.stop()
        report.locked_in_log = server.count_in_log(LOCKED)
    db_file = sqlite_file(database_url)
    report.integrity = sqlite_integrity(db_file) if db_file is not None else None
    return report


def _client(url: str, connections: int) -> httpx.AsyncClient:
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them, or a
    # request may race the server's close and fail with a ReadError that is not the service's.
    limits = httpx.Limits(
        max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=2.0
    )
    return httpx.AsyncClient(base_url=url, limits=limits, timeout=httpx.Timeout(60.0))


async def _warm_up(url: str, config: LoadConfig) -> None:
    """Reach steady state before the baseline: a small load of the same shape, then replays.

    It loads every code path and fills the thread and DB connection pools, which keep their
    threads and connections afterwards by design.
    """
    clients = min(config.clients, 64)
    async with _client(url, clients + 32) as client:
        gen = LoadGenerator(
            client,
            runs=2 * clients,
            clients=clients,
            streams=min(config.streams, 16),
            time_limit=60,
        )
        load = await gen.create_all()
        await wait_until_idle(client, 60.0)
        await gen.finish_streams()
        ids = list(load.created)

        async def replay(run_id: str) -> None:
            async with client.stream("GET", f"/runs/{run_id}/events") as response:
                await response.aread()

        await asyncio.gather(*(replay(ids[i % len(ids)]) for i in range(clients)))
        for _ in range(3):  # concurrent reads: the DB pools reach their kept size
            await asyncio.gather(
                *(client.get(f"/runs/{ids[i % len(ids)]}") for i in range(clients))
            )
    await asyncio.sleep(1.0)


async def _settle(server: ServerProcess, base: ProcStats, config: LoadConfig) -> Settle:
    t0 = time.monotonic()
    while True:
        now = server.stats()
        if config.tolerance.within(now, base):
            return Settle(time.monotonic() - t0, now)
        if time.monotonic() - t0 > config.settle_limit:
            return Settle(None, now)
        await asyncio.sleep(0.5)


async def _sample_peak(server: ServerProcess, peak: list[ProcStats]) -> None:
    while True:
        now, top = server.stats(), peak[0]
        peak[0] = ProcStats(
            max(top.rss_kb, now.rss_kb), max(top.fds, now.fds), max(top.threads, now.threads)
        )
        await asyncio.sleep(0.5)


async def _drive(
    backend: str, server: ServerProcess, config: LoadConfig, env: dict[str, str]
) -> Report:
    await _warm_up(server.url, config)
    baseline = server.stats()
    peak = [baseline]
    sampler = asyncio.create_task(_sample_peak(server, peak))
    limit = config.load_time_limit
    async with _client(server.url, config.clients + config.streams + 20) as client:
        gen = LoadGenerator(
            client,
            runs=config.runs,
            clients=config.clients,
            streams=config.streams,
            time_limit=limit,
        )
        load = await gen.create_all()
        await wait_until_idle(client, max(10.0, load.started + limit - time.monotonic()))
        elapsed = time.monotonic() - load.started
        streams = await gen.finish_streams()
        statuses = await run_statuses(client, config.runs + 100)
        sse = await check_streams(client, streams)
    sampler.cancel()
    lost = [rid for rid in load.created if statuses.get(rid) not in TERMINAL_STATUSES]
    not_ok = sum(statuses.get(rid, "succeeded") != "succeeded" for rid in load.created)
    after_load = await _settle(server, baseline, config)
    dropped = await _drop_phase(server, list(load.created), config)
    after_drop = await _settle(server, baseline, config)
    return Report(
        backend=backend,
        config=config,
        server_env=env,
        load=load,
        elapsed=elapsed,
        lost=lost,
        not_succeeded=not_ok,
        sse=sse,
        baseline=baseline,
        peak=peak[0],
        after_load=after_load,
        dropped=dropped,
        after_drop=after_drop,
    )


async def _drop_phase(
    server: ServerProcess, finished: list[str], config: LoadConfig
) -> DropOutcome:
    """Drop streams over finished runs and over runs started just for this; check the latter."""
    async with _client(server.url, 16) as client:
        long_ids = []
        for _ in range(config.long_runs):
            r = await client.post("/graphs/basic_fanout/runs", json={"input": LONG_RUN_INPUT})
            long_ids.append(r.raise_for_status().json()["id"])
        await wait_for_runs(client, long_ids, frozenset({"running", *TERMINAL_STATUSES}), 30.0)
        before = server.stats()
        dropper = StreamDropper(
            server.url,
            running=long_ids,
            finished=finished,
            clients=config.drop_clients,
            time_limit=120.0,
        )
        drop = await dropper.run()
        final = await wait_for_runs(client, long_ids, TERMINAL_STATUSES, 60.0)
        long_ok = all(status == "succeeded" for status in final.values())
        run = (await client.get(f"/runs/{long_ids[0]}")).json()
        async with client.stream("GET", f"/runs/{long_ids[0]}/events") as response:
            body = await response.aread()
        ids = [int(line[4:]) for line in body.decode().splitlines() if line.startswith("id: ")]
        replay_ok = ids == list(range(1, expected_event_count(run) + 1))
    return DropOutcome(drop=drop, long_runs_ok=long_ok, replay_ok=replay_ok, before=before)
