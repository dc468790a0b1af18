"""How runs/s scale with the number of ``graphflow worker`` processes, on Postgres.

For each worker count N in ``--workers`` this starts, on a fresh Postgres database, one
``python -m service.cli api`` process and N ``python -m service.cli worker`` processes, each
worker with ``GRAPHFLOW_MAX_CONCURRENT_RUNS=--slots`` (admission caps lifted), and measures:

- runs/s: ``--runs-per-worker`` x N runs of ``bench_sleep_chain`` (``bench/workflows.py``: four
  chained nodes sleeping ``--delay`` s each, so a run holds its slot for ``4 x delay`` while
  costing little CPU) are POSTed by 32 concurrent clients, a backlog that keeps every slot busy;
  then the ``runs`` table is polled until all are terminal. runs/s = runs / (first
  ``started_at`` to last ``finished_at``). The ideal is N x slots / (4 x delay) (only the
  sleeps); "efficiency" is runs/s over N x runs/s at one worker.
- CPU per run: ``utime + stime`` of the api and every worker over the phase (``/proc``), and
  of the Postgres backends serving the bench database ("DB CPU"), divided by the runs.
- correctness: every run ``succeeded`` (else it is "lost"); no node run executed twice (two
  ``node_started`` events for one ``node_run_id``, or a ``node_runs`` row past attempt 1); how
  many distinct workers (``runs.owner_id``) executed runs.
- where the time goes: mean run duration against ``4 x delay``, slot occupancy, and the gap
  between a run ending on a worker and that worker's next claim (its k-th claim is matched to
  its (k - slots)-th end: the slot it reuses).
- SSE delivery across processes (N >= 2, once the backlog is done): ``--sse-runs`` runs one at
  a time, each streamed from the api while a worker executes it; latency = the client's receipt
  of a ``node_completed`` event - its ``finished_at`` (one machine, one clock).

    .venv/bin/python bench/scaleout.py [--workers 1,2,4] [--slots 4] [--runs-per-worker 60]
        [--delay 0.05] [--sse-runs 20] [--min-efficiency 0.9] [--json OUT]

Exits 1 when a run was lost or executed twice, or when the efficiency at more than one worker is
below ``--min-efficiency``. Every process logs to a file in a temporary directory that is kept
(its path is printed); every process is stopped and the database dropped, even on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loadserver import (  # noqa: E402
    ServerProcess,
    _libpq,
    free_port,
    fresh_postgres_database,
    generous_caps,
)
from bench.service_bench import CLK_TCK, cpu_ticks, db_backend_ticks, iter_sse, pct  # noqa: E402
from bench.workflows import SLEEP_CHAIN  # noqa: E402

CHAIN_NODES = 4
POST_CONCURRENCY = 32
STARTUP_TIMEOUT = 60.0
DRAIN_TIMEOUT = 600.0
SSE_TARGET_P50_MS = 20.0
ACTIVE = ("queued", "running")


class RoleProcess(ServerProcess):
    """``python -m service.cli api|worker``; its log, health wait and stop are
    ``ServerProcess``'s. ``ServerProcess.__init__`` is not called: it starts uvicorn itself."""

    def __init__(
        self, role: str, database_url: str, log_path: Path, env: Mapping[str, str]
    ) -> None:
        self.role = role
        self.log_path = log_path
        self.health_file = log_path.with_suffix(".health")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if role == "api":
            options = ["--host", "127.0.0.1", "--port", str(self.port)]
        else:
            options = ["--health-file", str(self.health_file)]
        pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        full_env = dict(os.environ, GRAPHFLOW_DATABASE_URL=database_url, PYTHONPATH=pythonpath)
        full_env.update(env)
        cmd = [sys.executable, "-m", "service.cli", role, *options, "--log-level", "warning"]
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """The api answers /healthz; a worker has written its health file (its first lease
        renewal, after migrating and starting its run slots)."""
        if self.role == "api":
            self._wait_healthy(timeout)
            return
        deadline = time.monotonic() + timeout
        while not self.health_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker wrote no health file in {timeout:g} s:\n{self.log()}")
            time.sleep(0.05)


@contextlib.contextmanager
def cluster(
    database_url: str, workers: int, slots: int, logdir: Path
) -> Iterator[tuple[RoleProcess, list[RoleProcess]]]:
    """An api and ``workers`` workers on ``database_url``, ready; all stopped afterwards."""
    env = generous_caps(runs=1_000_000, streams=10_000)
    env.update(
        GRAPHFLOW_WORKFLOWS="bench.workflows",
        GRAPHFLOW_MAX_CONCURRENT_RUNS=str(slots),
        GRAPHFLOW_SHUTDOWN_GRACE_SECONDS="1",
    )
    logdir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        # Started together: migrations serialize on an advisory lock, so a fresh database is
        # safe, and the startup costs one process's time instead of N + 1.
        api = RoleProcess("api", database_url, logdir / "api.log", env)
        stack.callback(api.stop)
        fleet = []
        for i in range(workers):
            worker = RoleProcess("worker", database_url, logdir / f"worker-{i}.log", env)
            stack.callback(worker.stop)
            fleet.append(worker)
        for process in (api, *fleet):
            process.wait_ready()
        yield api, fleet


# -- load -----------------------------------------------------------------------------------


async def _post_backlog(url: str, runs: int, delay: float) -> list[str]:
    ids: list[str] = []
    body = {"input": {"delay": delay}}
    limits = httpx.Limits(max_connections=POST_CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def poster(count: int) -> None:
            for _ in range(count):
                resp = await client.post(f"/graphs/{SLEEP_CHAIN}/runs", json=body)
                if resp.status_code != 202:
                    raise RuntimeError(f"POST answered {resp.status_code}: {resp.text[:300]}")
                ids.append(resp.json()["id"])

        share, extra = divmod(runs, POST_CONCURRENCY)
        shares = [share + (i < extra) for i in range(POST_CONCURRENCY)]
        await asyncio.gather(*(poster(n) for n in shares if n))
    return ids


def post_backlog(url: str, runs: int, delay: float) -> list[str]:
    """Create ``runs`` runs as fast as ``POST_CONCURRENCY`` clients can; their ids."""
    return asyncio.run(_post_backlog(url, runs, delay))


def wait_terminal(db: psycopg.Connection[Any], expected: int) -> dict[str, int]:
    """Poll until ``expected`` runs are stored and none is queued or running; the counts."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while time.monotonic() < deadline:
        counts = dict(db.execute("select status, count(*) from runs group by status").fetchall())
        if sum(counts.values()) >= expected and not any(counts.get(s) for s in ACTIVE):
            return counts
        time.sleep(0.1)
    raise RuntimeError(f"runs still active after {DRAIN_TIMEOUT:.0f} s: {counts}")


@dataclass
class CpuSnapshot:
    """CPU ticks of the service's processes, of the database's backends, of the machine."""

    api: int
    workers: int
    db: int
    machine_busy: int
    machine_total: int
    at: float

    @classmethod
    def take(cls, api: int, workers: list[int], database: str, own_backend: int) -> CpuSnapshot:
        # /proc/stat's first line: user nice system idle iowait irq softirq steal ...
        jiffies = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        backends = db_backend_ticks(database)
        backends.pop(own_backend, None)  # this script's polling is not the service's cost
        return cls(
            api=sum(cpu_ticks(api)),
            workers=sum(sum(cpu_ticks(pid)) for pid in workers),
            db=sum(backends.values()),
            machine_busy=sum(jiffies) - jiffies[3] - jiffies[4],
            machine_total=sum(jiffies),
            at=time.monotonic(),
        )


# -- one worker count -----------------------------------------------------------------------


@dataclass
class Row:
    """The figures of one worker count."""

    workers: int
    slots: int
    runs: int
    runs_per_s: float
    ideal_per_s: float
    window_s: float
    statuses: dict[str, int]
    lost: int
    double_executions: int
    workers_used: int
    cpu_ms_per_run: float
    api_cpu_ms_per_run: float
    db_cpu_ms_per_run: float
    api_cpu_util: float
    machine_cpu_util: float
    mean_run_ms: float
    slot_occupancy: float
    claim_gap_p50_ms: float
    claim_gap_p95_ms: float
    efficiency: float | None = None  # against N x the one-worker rate
    sse: dict[str, Any] = field(default_factory=dict)

    @property
    def of_ideal(self) -> float:
        return self.runs_per_s / self.ideal_per_s


DOUBLE_STARTS = """
    select run_id, data::jsonb->>'node_run_id' from run_events
    where type = 'node_started' and run_id = any(%(ids)s) group by 1, 2 having count(*) > 1
"""
RETRIED_NODES = """
    select run_id, activation_id from node_runs where attempt <> 1 and run_id = any(%(ids)s)
"""


def double_executions(db: psycopg.Connection[Any], ids: list[str]) -> int:
    """Node runs of ``ids`` that started twice or were attempted more than once."""
    twice = set(db.execute(DOUBLE_STARTS, {"ids": ids}).fetchall())
    return len(twice | set(db.execute(RETRIED_NODES, {"ids": ids}).fetchall()))


def claim_gaps_ms(spans: list[tuple[str, datetime, datetime]], slots: int) -> list[float]:
    """Per worker, its k-th claim minus its (k - slots)-th end: how long a freed slot idled
    while the backlog still had runs."""
    gaps: list[float] = []
    for owner in {owner for owner, _, _ in spans}:
        starts = sorted(s for o, s, _ in spans if o == owner)
        ends = sorted(e for o, _, e in spans if o == owner)
        gaps += [(s - e).total_seconds() * 1000 for s, e in zip(starts[slots:], ends, strict=False)]
    return gaps


def measure(
    api: RoleProcess, fleet: list[RoleProcess], database_url: str, args: argparse.Namespace
) -> Row:
    """Run the backlog through the workers; its figures and checks."""
    workers, slots, delay = len(fleet), args.slots, args.delay
    database = database_url.rpartition("/")[2]
    pids = [w.pid for w in fleet]
    with psycopg.connect(_libpq(database_url), autocommit=True) as db:
        own = db.info.backend_pid
        before = CpuSnapshot.take(api.pid, pids, database, own)
        ids = post_backlog(api.url, args.runs_per_worker * workers, delay)
        statuses = wait_terminal(db, len(ids))
        after = CpuSnapshot.take(api.pid, pids, database, own)
        spans = db.execute(
            "select owner_id, started_at, finished_at from runs where id = any(%s)", [ids]
        ).fetchall()
        succeeded = db.execute(
            "select count(*) from runs where id = any(%s) and status = 'succeeded'", [ids]
        ).fetchone()
        doubles = double_executions(db, ids)
    runs = len(ids)
    window = (max(e for _, _, e in spans) - min(s for _, s, _ in spans)).total_seconds()
    busy = sum((e - s).total_seconds() for _, s, e in spans)
    gaps = claim_gaps_ms(spans, slots)
    api_s = (after.api - before.api) / CLK_TCK
    workers_s = (after.workers - before.workers) / CLK_TCK
    machine = after.machine_total - before.machine_total
    return Row(
        workers=workers,
        slots=slots,
        runs=runs,
        runs_per_s=runs / window,
        ideal_per_s=workers * slots / (CHAIN_NODES * delay),
        window_s=window,
        statuses=statuses,
        lost=runs - (succeeded[0] if succeeded else 0),
        double_executions=doubles,
        workers_used=len({owner for owner, _, _ in spans if owner}),
        cpu_ms_per_run=(api_s + workers_s) * 1000 / runs,
        api_cpu_ms_per_run=api_s * 1000 / runs,
        db_cpu_ms_per_run=(after.db - before.db) / CLK_TCK * 1000 / runs,
        api_cpu_util=api_s / (after.at - before.at),
        machine_cpu_util=(after.machine_busy - before.machine_busy) / max(1, machine),
        mean_run_ms=busy * 1000 / runs,
        slot_occupancy=busy / (window * workers * slots),
        claim_gap_p50_ms=pct(gaps, 0.5),
        claim_gap_p95_ms=pct(gaps, 0.95),
    )


def sse_latency(url: str, runs: int, delay: float) -> dict[str, Any]:
    """Stream ``runs`` runs one at a time from the api; node completion to client receipt."""
    latencies: list[float] = []
    with httpx.Client(base_url=url, timeout=60) as http:
        for _ in range(runs):
            run = http.post(f"/graphs/{SLEEP_CHAIN}/runs", json={"input": {"delay": delay}})
            run.raise_for_status()
            with http.stream("GET", f"/runs/{run.json()['id']}/events") as stream:
                for event, data, received in iter_sse(stream):
                    if event == "node_completed":
                        done = datetime.fromisoformat(data["finished_at"]).timestamp()
                        latencies.append((received - done) * 1000)
    return {
        "runs": runs,
        "samples": len(latencies),
        "p50_ms": pct(latencies, 0.5),
        "p95_ms": pct(latencies, 0.95),
        "max_ms": max(latencies, default=float("nan")),
    }


def bench_workers(workers: int, logdir: Path, args: argparse.Namespace) -> Row:
    with (
        fresh_postgres_database() as database_url,
        cluster(database_url, workers, args.slots, logdir) as (api, fleet),
    ):
        row = measure(api, fleet, database_url, args)
        if workers >= 2 and args.sse_runs:
            row.sse = sse_latency(api.url, args.sse_runs, args.delay)
    return row


# -- report ---------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[Row]) -> None:
    header = (
        "workers",
        "slots",
        "runs",
        "runs/s",
        "ideal",
        "eff vs 1",
        "of ideal",
        "CPU ms/run",
        "DB CPU ms/run",
        "workers used",
        "lost",
        "double exec",
    )
    cells = [
        (
            str(r.workers),
            str(r.slots),
            str(r.runs),
            f"{r.runs_per_s:.1f}",
            f"{r.ideal_per_s:.0f}",
            _fmt(r.efficiency, ".0%"),
            f"{r.of_ideal:.0%}",
            f"{r.cpu_ms_per_run:.1f}",
            f"{r.db_cpu_ms_per_run:.1f}",
            str(r.workers_used),
            str(r.lost),
            str(r.double_executions),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    print("  " + "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for row, cell in zip(rows, cells, strict=True):
        print("  " + "  ".join(c.rjust(w) for c, w in zip(cell, widths, strict=True)))
        print(
            f"      window {row.window_s:.2f} s; mean run {row.mean_run_ms:.0f} ms; slot "
            f"occupancy {row.slot_occupancy:.0%}; claim gap p50 {row.claim_gap_p50_ms:.1f} ms, "
            f"p95 {row.claim_gap_p95_ms:.1f} ms; api {row.api_cpu_ms_per_run:.1f} ms/run "
            f"({row.api_cpu_util:.0%} of a core); machine CPU {row.machine_cpu_util:.0%}; "
            f"statuses {row.statuses}"
        )
    for row in rows:
        if row.sse:
            sse = row.sse
            verdict = "met" if sse["p50_ms"] <= SSE_TARGET_P50_MS else "MISSED"
            print(
                f"  SSE api<-worker ({row.workers} workers): p50 {sse['p50_ms']:.1f} ms, "
                f"p95 {sse['p95_ms']:.1f} ms, max {sse['max_ms']:.1f} ms over {sse['samples']} "
                f"node_completed events of {sse['runs']} runs (target p50 <= "
                f"{SSE_TARGET_P50_MS:g} ms: {verdict})"
            )


def failures(rows: list[Row], min_efficiency: float) -> list[str]:
    found: list[str] = []
    for row in rows:
        n = f"{row.workers} worker(s)"
        if row.lost:
            found.append(f"{n}: {row.lost} of {row.runs} runs lost ({row.statuses})")
        if row.double_executions:
            found.append(f"{n}: {row.double_executions} node runs executed twice")
        if row.workers > 1 and row.efficiency is not None and row.efficiency < min_efficiency:
            found.append(f"{n}: scaling efficiency {row.efficiency:.0%} < {min_efficiency:.0%}")
    return found


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workers", default="1,2,4", help="comma separated worker counts")
    parser.add_argument("--slots", type=int, default=4, help="run slots per worker")
    parser.add_argument("--runs-per-worker", type=int, default=60)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds each node sleeps")
    parser.add_argument("--sse-runs", type=int, default=20, help="runs streamed (0: none)")
    parser.add_argument("--min-efficiency", type=float, default=0.9)
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args(argv)
    args.workers = [int(n) for n in args.workers.split(",") if n.strip()]
    if not args.workers or min(args.workers) < 1:
        parser.error("--workers needs counts of at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logdir = Path(tempfile.mkdtemp(prefix="gf-scaleout-"))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"GraphFlow scale-out bench: {SLEEP_CHAIN} ({CHAIN_NODES} x {args.delay:g} s), "
        f"{args.slots} slots/worker, {args.runs_per_worker} runs/worker; {os.cpu_count()} CPUs, "
        f"load avg {load}; process logs in {logdir}",
        flush=True,
    )
    rows: list[Row] = []
    try:
        for workers in args.workers:
            rows.append(bench_workers(workers, logdir / f"{workers}-workers", args))
            print(f"  {workers} worker(s): {rows[-1].runs_per_s:.1f} runs/s", flush=True)
    except KeyboardInterrupt:
        print("interrupted: processes stopped, databases dropped", file=sys.stderr)
        return 130
    base = next((r.runs_per_s for r in rows if r.workers == 1), None)
    for row in rows:
        row.efficiency = None if base is None else row.runs_per_s / (row.workers * base)
    print()
    print_table(rows)
    if base is None:
        print("  (no 1-worker row: scaling efficiency not computed or checked)")
    found = failures(rows, args.min_efficiency)
    if args.json:
        figures = [asdict(r) | {"of_ideal": r.of_ideal} for r in rows]
        args.json.write_text(json.dumps({"args": vars(args), "rows": figures}, default=str))
    for problem in found:
        print(f"FAIL {problem}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
