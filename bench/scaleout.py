"""How runs/s scale with the number of ``graphflow worker`` processes, on Postgres.

For each worker count N in ``--workers``: a fresh Postgres database, one ``python -m service.cli
api`` process and N ``... worker`` processes with ``--slots`` run slots each (admission caps
lifted). A backlog of ``--runs-per-worker`` x N runs of ``bench_sleep_chain`` (four chained
nodes sleeping ``--delay`` s: a run holds its slot for ``4 x delay`` at little CPU) is POSTed by
32 concurrent clients, keeping every slot busy; the ``runs`` table is polled until all are
terminal. runs/s = runs / (first ``started_at`` to last ``finished_at``); the ideal is
N x slots / (4 x delay); "efficiency vs 1" is runs/s over N x runs/s at one worker. CPU ms/run
is ``utime + stime`` (``/proc``) of the api and all workers over the backlog, DB CPU that of the
database's Postgres backends. Checked: every run ``succeeded`` (else "lost"); no node run
executed twice (two ``node_started`` events for one ``node_run_id``, or an attempt past 1).
Under each row: where a run's time went, how long a freed slot waited for its next claim (a
worker's k-th claim minus its (k - slots)-th end), who used the machine's CPU (the api, this
script, processes outside the benchmark: on a small machine they compete with the workers).
With N >= 2 the idle system then streams ``--sse-runs`` runs one at a time from the api while
workers execute them: latency = a ``node_completed`` event's receipt by the client - its
``finished_at`` (one machine clock).

    .venv/bin/python bench/scaleout.py [--workers 1,2,4] [--slots 4] [--runs-per-worker 60]
        [--delay 0.05] [--sse-runs 20] [--min-efficiency 0.9] [--json OUT]

Exits 1 when a run was lost or executed twice, or when the efficiency at N > 1 is below
``--min-efficiency``. Process logs go to a kept temporary directory (printed); every process is
stopped and every database dropped, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
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
    free_port,
    fresh_postgres_database,
    generous_caps,
    libpq_url,
)
from bench.measuring import CLK_TCK, cpu_ticks, db_backend_ticks, pct  # noqa: E402
from bench.service_bench import iter_sse  # noqa: E402
from bench.workflows import SLEEP_CHAIN  # noqa: E402

CHAIN_NODES = 4
POST_CONCURRENCY = 32
STARTUP_TIMEOUT = 60.0
DRAIN_TIMEOUT = 600.0
SSE_TARGET_P50_MS = 20.0
ACTIVE = ("queued", "running")
SERVICE_AND_CLIENT = ("api", "workers", "db", "client")


class RoleProcess(ServerProcess):
    """``python -m service.cli api|worker``; its log, health wait and stop are
    ``ServerProcess``'s. ``ServerProcess.__init__`` is not called: it starts uvicorn itself."""

    def __init__(
        self, role: str, database_url: str, log_path: Path, env: Mapping[str, str]
    ) -> None:
        self.role = role
        self.log_path = log_path
        self.health_file = log_path.with_suffix(".health")
        options = ["--health-file", str(self.health_file)]
        if role == "api":
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            options = ["--host", "127.0.0.1", "--port", str(self.port)]
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


async def post_backlog(url: str, runs: int, delay: float) -> list[str]:
    """Create ``runs`` runs as fast as ``POST_CONCURRENCY`` clients can; their ids."""
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
        await asyncio.gather(*(poster(share + (i < extra)) for i in range(POST_CONCURRENCY)))
    return ids


def wait_terminal(db: psycopg.Connection[Any], expected: int) -> dict[str, int]:
    """Poll until ``expected`` runs are stored and none is queued or running; the counts."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = dict(db.execute("select status, count(*) from runs group by status").fetchall())
        if sum(counts.values()) >= expected and not any(counts.get(s) for s in ACTIVE):
            return counts
        time.sleep(0.1)
    raise RuntimeError(f"runs still active after {DRAIN_TIMEOUT:.0f} s: {counts}")


def cpu_seconds(api: int, workers: list[int], database: str, own_backend: int) -> dict[str, float]:
    """CPU seconds so far of the api, the workers, the database's backends, this script and the
    machine (busy and in all), and the monotonic time: two of these make a measurement window."""
    # /proc/stat's first line: user nice system idle iowait irq softirq steal ...
    jiffies = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    backends = db_backend_ticks(database)
    backends.pop(own_backend, None)  # this script's polling is not the service's cost
    ticks = {
        "api": sum(cpu_ticks(api)),
        "workers": sum(sum(cpu_ticks(pid)) for pid in workers),
        "db": sum(backends.values()),
        "client": sum(cpu_ticks(os.getpid())),
        "machine_busy": sum(jiffies) - jiffies[3] - jiffies[4],
        "machine": sum(jiffies),
    }
    return {key: n / CLK_TCK for key, n in ticks.items()} | {"wall": time.monotonic()}


# -- one worker count -----------------------------------------------------------------------


@dataclass
class Row:
    """The figures of one worker count; ``diagnosis`` says where a shortfall comes from."""

    workers: int
    slots: int
    runs: int
    runs_per_s: float
    ideal_per_s: float
    cpu_ms_per_run: float  # the api and all workers
    db_cpu_ms_per_run: float
    workers_used: int
    lost: int
    double_executions: int
    statuses: dict[str, int]
    diagnosis: dict[str, float]
    efficiency: float | None = None  # against N x the one-worker rate
    sse: dict[str, float] = field(default_factory=dict)


# Node runs started twice, or attempted more than once (a union: each counted once).
DOUBLE_EXECUTIONS = """
    select run_id, data::jsonb->>'node_run_id' from run_events
    where type = 'node_started' and run_id = any(%(ids)s) group by 1, 2 having count(*) > 1
    union
    select run_id, activation_id from node_runs where attempt <> 1 and run_id = any(%(ids)s)
"""
# Mean seconds per run: claim to its first node's start, in nodes, between nodes (the engine's
# hand-offs), last node's end to the run's end being stored.
PHASES = ("to_first", "in_nodes", "hand_offs", "to_end")
RUN_PHASES = """
    with per_run as (
        select r.started_at as claimed, r.finished_at as ended,
               min(n.started_at) as first_start, max(n.finished_at) as last_end,
               sum(extract(epoch from n.finished_at - n.started_at)::float8) as in_nodes
        from runs r join node_runs n on n.run_id = r.id
        where r.id = any(%(ids)s) group by r.id
    )
    select avg(extract(epoch from first_start - claimed)::float8),
           avg(in_nodes),
           avg(extract(epoch from last_end - first_start)::float8 - in_nodes),
           avg(extract(epoch from ended - last_end)::float8)
    from per_run
"""


def claim_gaps_ms(spans: list[tuple[str, datetime, datetime]], slots: int) -> list[float]:
    """Per worker, its k-th claim minus its (k - slots)-th end: how long a freed slot idled
    while the backlog still had runs."""
    gaps: list[float] = []
    for owner in {owner for owner, _, _ in spans}:
        starts = sorted(s for o, s, _ in spans if o == owner)
        ends = sorted(e for o, _, e in spans if o == owner)
        gaps += [(s - e).total_seconds() * 1000 for s, e in zip(starts[slots:], ends, strict=False)]
    return gaps


def diagnose(
    db: psycopg.Connection[Any], ids: list[str], slots: int, used: dict[str, float]
) -> dict[str, float]:
    """Where the time of the backlog went, and the CPU it took (``used``: seconds)."""
    spans = db.execute(
        "select owner_id, started_at, finished_at from runs where id = any(%s)"
        " and started_at is not null and finished_at is not null",  # a lost run may have none
        [ids],
    ).fetchall()
    owners = {owner for owner, _, _ in spans if owner}
    window = (max(e for _, _, e in spans) - min(s for _, s, _ in spans)).total_seconds()
    busy = sum((e - s).total_seconds() for _, s, e in spans)
    phases = db.execute(RUN_PHASES, {"ids": ids}).fetchone() or (float("nan"),) * 4
    gaps = claim_gaps_ms(spans, slots)
    return {
        "window_s": window,
        "workers_used": len(owners),
        "slot_occupancy": busy / (window * max(1, len(owners)) * slots),
        "run_ms": busy * 1000 / len(ids),
        **{f"{name}_ms": s * 1000 for name, s in zip(PHASES, phases, strict=True)},
        "claim_gap_p50_ms": pct(gaps, 0.5),
        "claim_gap_p95_ms": pct(gaps, 0.95),
        "api_cpu_ms_per_run": used["api"] * 1000 / len(ids),
        "api_cpu_util": used["api"] / used["wall"],
        "client_cpu_ms_per_run": used["client"] * 1000 / len(ids),
        "machine_cpu_util": used["machine_busy"] / max(used["machine"], 1e-9),
        "others_cpu_util": (used["machine_busy"] - sum(used[k] for k in SERVICE_AND_CLIENT))
        / max(used["machine"], 1e-9),
    }


def measure(
    api: RoleProcess, fleet: list[RoleProcess], database_url: str, args: argparse.Namespace
) -> Row:
    """Run a backlog through the workers; its figures and checks."""
    workers = len(fleet)
    pids = [w.pid for w in fleet]
    with psycopg.connect(libpq_url(database_url), autocommit=True) as db:
        cpu_now = functools.partial(
            cpu_seconds, api.pid, pids, database_url.rpartition("/")[2], db.info.backend_pid
        )
        before = cpu_now()
        ids = asyncio.run(post_backlog(api.url, args.runs_per_worker * workers, args.delay))
        posted_s = time.monotonic() - before["wall"]
        statuses = wait_terminal(db, len(ids))
        used = {key: value - before[key] for key, value in cpu_now().items()}
        succeeded = db.execute(
            "select count(*) from runs where id = any(%s) and status = 'succeeded'", [ids]
        ).fetchone()
        diagnosis = diagnose(db, ids, args.slots, used) | {"posted_s": posted_s}
        doubles = len(db.execute(DOUBLE_EXECUTIONS, {"ids": ids}).fetchall())
    runs = len(ids)
    return Row(
        workers=workers,
        slots=args.slots,
        runs=runs,
        runs_per_s=runs / diagnosis["window_s"],
        ideal_per_s=workers * args.slots / (CHAIN_NODES * args.delay),
        cpu_ms_per_run=(used["api"] + used["workers"]) * 1000 / runs,
        db_cpu_ms_per_run=used["db"] * 1000 / runs,
        workers_used=int(diagnosis.pop("workers_used")),
        lost=runs - (succeeded[0] if succeeded else 0),
        double_executions=doubles,
        statuses=statuses,
        diagnosis=diagnosis,
    )


def sse_latency(url: str, runs: int, delay: float) -> dict[str, float]:
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
    p50, p95 = pct(latencies, 0.5), pct(latencies, 0.95)
    return {"runs": runs, "samples": len(latencies), "p50_ms": p50, "p95_ms": p95}


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

COLUMNS: list[tuple[str, Callable[[Row], str]]] = [
    ("workers", lambda r: str(r.workers)),
    ("slots", lambda r: str(r.slots)),
    ("runs", lambda r: str(r.runs)),
    ("runs/s", lambda r: f"{r.runs_per_s:.1f}"),
    ("ideal", lambda r: f"{r.ideal_per_s:.0f}"),
    ("efficiency vs 1", lambda r: "-" if r.efficiency is None else f"{r.efficiency:.0%}"),
    ("of ideal", lambda r: f"{r.runs_per_s / r.ideal_per_s:.0%}"),
    ("CPU ms/run", lambda r: f"{r.cpu_ms_per_run:.1f}"),
    ("DB CPU ms/run", lambda r: f"{r.db_cpu_ms_per_run:.1f}"),
    ("workers used", lambda r: str(r.workers_used)),
    ("lost", lambda r: str(r.lost)),
    ("double exec", lambda r: str(r.double_executions)),
]


def print_table(rows: list[Row], delay: float) -> None:
    cells = [[show(row) for _, show in COLUMNS] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (h, _) in enumerate(COLUMNS)]
    print("  " + "  ".join(h.rjust(w) for (h, _), w in zip(COLUMNS, widths, strict=True)))
    for row, cell in zip(rows, cells, strict=True):
        print("  " + "  ".join(c.rjust(w) for c, w in zip(cell, widths, strict=True)))
        d = row.diagnosis
        print(
            f"      backlog POSTed in {d['posted_s']:.2f} s; {d['window_s']:.2f} s from first "
            f"claim to last end; slots busy {d['slot_occupancy']:.0%}; a freed slot's next "
            f"claim after p50 {d['claim_gap_p50_ms']:.1f} ms, p95 {d['claim_gap_p95_ms']:.1f} ms\n"
            f"      run {d['run_ms']:.1f} ms = claim->first node {d['to_first_ms']:.1f} + in nodes "
            f"{d['in_nodes_ms']:.1f} (sleeps {CHAIN_NODES * delay * 1000:g}) + hand-offs "
            f"{d['hand_offs_ms']:.1f} + last node->end stored {d['to_end_ms']:.1f}\n"
            f"      CPU ms/run: api {d['api_cpu_ms_per_run']:.1f} ({d['api_cpu_util']:.0%} of a "
            f"core), this script {d['client_cpu_ms_per_run']:.1f}; machine CPU busy "
            f"{d['machine_cpu_util']:.0%} ({d['others_cpu_util']:.0%} outside this benchmark); "
            f"statuses {row.statuses}"
        )
    for row in rows:
        if row.sse:
            sse = row.sse
            verdict = "met" if sse["p50_ms"] <= SSE_TARGET_P50_MS else "MISSED"
            print(
                f"  SSE worker -> api -> client ({row.workers} workers): p50 "
                f"{sse['p50_ms']:.1f} ms, p95 {sse['p95_ms']:.1f} ms over {sse['samples']:.0f}"
                f" node_completed events of {sse['runs']:.0f} runs (target p50 <= "
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
    if args.delay <= 0:
        parser.error("--delay must be positive: the ideal runs/s divides by it")
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
    print_table(rows, args.delay)
    if base is None:
        print("  (no 1-worker row: scaling efficiency not computed or checked)")
    found = failures(rows, args.min_efficiency)
    if args.json:
        args.json.write_text(
            json.dumps({"args": vars(args), "rows": [asdict(r) for r in rows]}, default=str)
        )
    for problem in found:
        print(f"FAIL {problem}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
