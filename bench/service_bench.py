"""End-to-end benchmark of the HTTP service under ``wrk``, on SQLite and Postgres.

For each database this starts its own server (``bench.loadserver.serve``: one uvicorn process on
a free loopback port, a fresh SQLite file or a fresh Postgres database, admission caps lifted,
``GRAPHFLOW_MAX_CONCURRENT_RUNS=8``) and runs these scenarios (``--only`` picks some):

- ``idle``: 50 sequential ``?wait=true`` POSTs of ``map_reduce`` (one item: 3 node runs).
- ``wait``: ``wrk -t2 -c<connections>`` POSTing ``map_reduce`` with ``?wait=true``; runs/s counts
  only 200 responses whose run succeeded; p50/p99 latency.
- ``poll``: ``wrk`` POSTing without wait (each 202 a run), then polling until no run is queued or
  running; runs/s = runs stored / (wrk start to last run finished); failed runs are counted.
- ``rate``: POST latency (p50/p95/p99) at ``--rate`` runs/s offered: ``wrk -c<connections>``
  paced by the script's ``delay()``, which spaces each wrk thread's requests evenly (sent by
  whichever connection is free), so the offered rate holds while latency is below
  ``connections / rate`` seconds; the achieved rate is reported next to it.
- ``map``: ``--map-runs`` runs (5) of ``bench_wide_map`` (``bench/workflows.py``), a 2,000-wide
  ``Send`` map (2,002 node runs), one after the other with ``?wait=true``: the median wall time
  per node (one run lasts a fraction of a second: a single one is noisy); then every run's
  stored node records and event stream are checked.
- ``sse``: node completion (server clock) to its ``node_completed`` event reaching a client.

Every row also gives the server's CPU time per run (``utime + stime`` of ``/proc/<pid>/stat``
over the scenario, including the drain of runs still queued when wrk stops, divided by the runs
it stored) and its CPU utilisation (CPU seconds / wall seconds) with the user/system split. On
Postgres, "DB CPU ms/run" is the same for the local Postgres backends serving the bench's
database (they share the machine's cores with the server).

    .venv/bin/python bench/service_bench.py [--seconds 10] [--rate 200] [--connections 50]
        [--no-postgres] [--only idle,wait,poll,rate,map,sse] [--repo PATH] [--json OUT]

``--repo PATH`` runs the server from another checkout of this repository (e.g. a clone at the
commit before a change): its root is the server's cwd and comes first on ``PYTHONPATH``; this
checkout comes second and supplies ``bench.workflows``. Rows are labelled with its short hash.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loadserver import (  # noqa: E402
    LOCKED,
    ServerProcess,
    fresh_postgres_database,
    generous_caps,
    serve,
)
from bench.measuring import CpuWindow, WrkResult, pct, run_wrk  # noqa: E402
from bench.workflows import SSE_CHAIN, WIDE_MAP  # noqa: E402

SCENARIOS = ("idle", "wait", "poll", "rate", "map", "sse")
GRAPH = "map_reduce"
GRAPH_BODY = {"input": {"items": ["x"]}}
GRAPH_NODES = 3  # map_phase -> single_mapper -> reduce_phase for one item
DRAIN_TIMEOUT = 900.0
ACTIVE = ("queued", "running")


def server_env() -> dict[str, str]:
    env = generous_caps(runs=1_000_000, streams=10_000)
    env.update(
        {
            "GRAPHFLOW_WORKFLOWS": "bench.workflows",
            "GRAPHFLOW_SHUTDOWN_GRACE_SECONDS": "1",
            "GRAPHFLOW_MAX_CONCURRENT_RUNS": "8",
            "GRAPHFLOW_RUN_WAIT_TIMEOUT": "600",
            "GRAPHFLOW_MAX_NODE_RUNS": "1000000",
        }
    )
    return env


@dataclass
class Row:
    """One scenario's result on one backend."""

    backend: str
    label: str
    scenario: str
    result: str
    detail: str = ""
    runs: int = 0
    cpu_ms_per_run: float | None = None
    db_cpu_ms_per_run: float | None = None
    cpu_util: str = "-"
    figures: dict[str, Any] = field(default_factory=dict)

    def charge(self, cpu: CpuWindow, runs: int) -> Row:
        self.runs = runs
        self.cpu_ms_per_run = cpu.cpu_s * 1000 / runs if runs else None
        if cpu.db_s is not None and runs:
            self.db_cpu_ms_per_run = cpu.db_s * 1000 / runs
        self.cpu_util = cpu.utilisation()
        self.figures.update(
            cpu_s=cpu.cpu_s, user_s=cpu.user_s, sys_s=cpu.sys_s, wall_s=cpu.wall_s, db_s=cpu.db_s
        )
        return self


# -- the service's API ----------------------------------------------------------------------


def newest_run(http: httpx.Client) -> str | None:
    items = http.get("/runs", params={"limit": 1}).json()["items"]
    return items[0]["id"] if items else None


def runs_since(http: httpx.Client, marker: str | None) -> Counter[str]:
    """Statuses of the runs stored after run ``marker`` (newest first, paginated)."""
    counts: Counter[str] = Counter()
    params: dict[str, Any] = {"limit": 100}
    while True:
        page = http.get("/runs", params=params).json()
        for item in page["items"]:
            if item["id"] == marker:
                return counts
            counts[item["status"]] += 1
        if not page["next_cursor"]:
            return counts
        params["cursor"] = page["next_cursor"]


def drain(http: httpx.Client, timeout: float = DRAIN_TIMEOUT) -> float | None:
    """Wait until no run is queued or running (seen twice, 0.2 s apart, so that POSTs still
    inside the server when wrk stopped are stored); the monotonic time of the first sighting,
    or None after ``timeout``."""
    deadline = time.monotonic() + timeout
    empty_since: float | None = None
    while time.monotonic() < deadline:
        busy = any(
            http.get("/runs", params={"status": s, "limit": 1}).json()["items"] for s in ACTIVE
        )
        now = time.monotonic()
        if busy:
            empty_since = None
        elif empty_since is None:
            empty_since = now
        elif now - empty_since >= 0.2:
            return empty_since
        time.sleep(0.05 if empty_since is not None else 0.1)
    return None


def iter_sse(resp: httpx.Response) -> Iterator[tuple[str, dict[str, Any], float]]:
    """``(event, data, time received)`` of each server-sent event of a streaming response."""
    fields: dict[str, str] = {}
    for line in resp.iter_lines():
        now = time.time()
        if line:
            if not line.startswith(":"):
                key, _, value = line.partition(":")
                fields[key] = value[1:] if value.startswith(" ") else value
            continue
        if "event" in fields:
            yield fields["event"], json.loads(fields.get("data") or "null"), now
        fields = {}


# -- scenarios ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """A ``wrk`` load and its drain: the runs it stored by status, and when each part ended."""

    wrk: WrkResult
    cpu: CpuWindow
    stored: Counter[str]
    started: float
    wrk_done: float
    drained: float


@dataclass
class Bench:
    server: ServerProcess
    http: httpx.Client
    args: argparse.Namespace
    backend: str
    label: str
    database: str | None  # the Postgres database's name, whose backends' CPU is counted too

    def row(self, scenario: str, result: str, detail: str = "", **figures: Any) -> Row:
        return Row(self.backend, self.label, scenario, result, detail, figures=figures)

    def cpu(self) -> CpuWindow:
        return CpuWindow(self.server.pid, self.database).start()

    def drained(self) -> float:
        end = drain(self.http)
        if end is None:
            raise RuntimeError(f"runs still queued or running after {DRAIN_TIMEOUT:.0f} s")
        return end

    def load(self, query: str = "", rate: float | None = None) -> Load:
        """``wrk`` POSTing ``map_reduce`` runs for ``--seconds`` (``query`` appended to the
        URL), then the drain of what is still queued or running, under one CPU window."""
        a = self.args
        marker = newest_run(self.http)
        cpu = self.cpu()
        started = time.monotonic()
        wrk = run_wrk(
            f"{self.server.url}/graphs/{GRAPH}/runs{query}",
            seconds=a.seconds,
            connections=a.connections,
            body=GRAPH_BODY,
            rate=rate,
        )
        wrk_done = time.monotonic()
        drained = self.drained()
        cpu.stop()
        return Load(wrk, cpu, runs_since(self.http, marker), started, wrk_done, drained)

    def check_graph(self) -> str:
        graph = self.http.get(f"/graphs/{GRAPH}").json()
        run = self.http.post(f"/graphs/{GRAPH}/runs?wait=true", json=GRAPH_BODY).json()
        nodes = [n["node"] for n in run["nodes"]]
        if run["status"] != "succeeded" or len(nodes) != GRAPH_NODES:
            raise RuntimeError(f"{GRAPH} with one item: {run['status']}, nodes {nodes}")
        return f"{GRAPH}: {len(graph['nodes'])} nodes in the graph; one item runs {nodes}"

    def idle(self) -> Row:
        latencies = []
        cpu = self.cpu()
        for _ in range(50):
            t0 = time.perf_counter()
            run = self.http.post(f"/graphs/{GRAPH}/runs?wait=true", json=GRAPH_BODY).json()
            latencies.append((time.perf_counter() - t0) * 1000)
            if run["status"] != "succeeded":
                raise RuntimeError(f"idle run ended {run['status']}: {run.get('error')}")
        cpu.stop()
        p50, p95 = pct(latencies, 0.5), pct(latencies, 0.95)
        row = self.row(
            "idle wait=true (1 client)",
            f"p50 {p50:.1f} ms, p95 {p95:.1f} ms",
            "50 runs",
            p50_ms=p50,
            p95_ms=p95,
        )
        return row.charge(cpu, 50)

    def wait(self) -> Row:
        a = self.args
        load = self.load("?wait=true")
        wrk, stored = load.wrk, load.stored
        ok = wrk.codes.get("200 succeeded", 0)
        rps = ok / wrk.duration_s
        row = self.row(
            f"wait=true (wrk -c{a.connections})",
            f"{rps:.1f} runs/s, p50 {wrk.p50_ms:.0f} ms, p99 {wrk.p99_ms:.0f} ms",
            f"{ok} ok in {wrk.duration_s:.1f} s; not ok: {wrk.others('200 succeeded')}; "
            f"stored {dict(stored)}",
            runs_per_s=rps,
            ok=ok,
            p50_ms=wrk.p50_ms,
            p99_ms=wrk.p99_ms,
            codes=wrk.codes,
            socket_errors=wrk.socket_errors,
            stored=dict(stored),
        )
        return row.charge(load.cpu, sum(stored.values()))

    def poll(self) -> Row:
        a = self.args
        load = self.load()
        wrk, stored = load.wrk, load.stored
        t0, t_wrk, end = load.started, load.wrk_done, load.drained
        runs = sum(stored.values())
        rps = runs / (end - t0)
        failed = stored.get("failed", 0)
        row = self.row(
            f"create-then-poll (wrk -c{a.connections})",
            f"{rps:.1f} runs/s, {failed} failed, POST p50 {wrk.p50_ms:.0f} ms",
            f"{wrk.count('202')} x 202 in {wrk.duration_s:.1f} s, {runs} stored, all done "
            f"{end - t_wrk:.1f} s after wrk; POST p99 {wrk.p99_ms:.0f} ms; "
            f"not 202: {wrk.others('202')}; stored {dict(stored)}",
            runs_per_s=rps,
            runs=runs,
            failed=failed,
            drain_s=end - t_wrk,
            post_p50_ms=wrk.p50_ms,
            post_p99_ms=wrk.p99_ms,
            codes=wrk.codes,
            socket_errors=wrk.socket_errors,
            stored=dict(stored),
        )
        return row.charge(load.cpu, runs)

    def rate(self) -> Row:
        a = self.args
        load = self.load(rate=a.rate)
        wrk, stored, t_wrk, end = load.wrk, load.stored, load.wrk_done, load.drained
        achieved = wrk.requests / wrk.duration_s
        row = self.row(
            f"POST at {a.rate:g}/s offered (-c{a.connections})",
            f"p50 {wrk.p50_ms:.1f} ms, p95 {wrk.p95_ms:.1f} ms, p99 {wrk.p99_ms:.1f} ms",
            f"achieved {achieved:.1f} req/s ({wrk.count('202')} x 202); "
            f"not 202: {wrk.others('202')}; backlog done {end - t_wrk:.1f} s after wrk; "
            f"stored {dict(stored)}",
            p50_ms=wrk.p50_ms,
            p95_ms=wrk.p95_ms,
            p99_ms=wrk.p99_ms,
            achieved_per_s=achieved,
            codes=wrk.codes,
            socket_errors=wrk.socket_errors,
            stored=dict(stored),
        )
        return row.charge(load.cpu, sum(stored.values()))

    def map(self) -> Row:
        n, runs = self.args.map_width, self.args.map_runs
        expected = n + 2
        walls: list[float] = []
        run_ids: list[str] = []
        cpu = self.cpu()
        for _ in range(runs):  # one run lasts a fraction of a second: take the median of some
            t0 = time.perf_counter()
            resp = self.http.post(
                f"/graphs/{WIDE_MAP}/runs?wait=true", json={"input": {"n": n}}, timeout=900
            )
            walls.append(time.perf_counter() - t0)
            run = resp.json()
            if resp.status_code != 200 or run["status"] != "succeeded":
                raise RuntimeError(f"wide map: HTTP {resp.status_code}, {run.get('status')}")
            run_ids.append(run["id"])
        cpu.stop()
        wall = statistics.median(walls)
        checks = [self._check_map_run(run_id, expected) for run_id in run_ids]
        nodes, events, types, complete = checks[-1]
        complete = all(check[3] for check in checks)
        ms_node = wall * 1000 / expected
        row = self.row(
            f"{n:,}-wide Send map, median of {runs}",
            f"{ms_node:.2f} ms/node ({wall:.2f} s for {expected} node runs)",
            f"per run {min(walls) * 1e3 / expected:.3f}-{max(walls) * 1e3 / expected:.3f} "
            f"ms/node; stored nodes {nodes}/{expected}; events {events} ({dict(types)}); every "
            f"node of every run started+completed: {'yes' if complete else 'NO'}; "
            f"server CPU {cpu.cpu_s * 1e6 / expected / runs:.0f} us/node",
            ms_per_node=ms_node,
            wall_s=wall,
            walls_s=walls,
            nodes=nodes,
            events=events,
            event_types=dict(types),
            complete=complete,
        )
        return row.charge(cpu, runs)

    def _check_map_run(self, run_id: str, expected: int) -> tuple[int, int, Counter[str], bool]:
        """(stored node runs, events, events by type, every node started and completed)."""
        nodes = self.http.get(f"/runs/{run_id}", timeout=120).json()["nodes"]
        types: Counter[str] = Counter()
        seen: dict[str, set[str]] = {"node_started": set(), "node_completed": set()}
        with self.http.stream("GET", f"/runs/{run_id}/events", timeout=300) as stream:
            for event, data, _ in iter_sse(stream):
                types[event] += 1
                if event in seen:
                    seen[event].add(data["node_run_id"])
        ids = {node["id"] for node in nodes}
        complete = len(ids) == expected and ids == seen["node_started"] == seen["node_completed"]
        return len(nodes), sum(types.values()), types, complete

    def sse(self) -> Row:
        count = self.args.sse_runs
        latencies: list[float] = []
        cpu = self.cpu()
        for _ in range(count):
            run = self.http.post(f"/graphs/{SSE_CHAIN}/runs", json={"input": {"delay": 0.05}})
            with self.http.stream("GET", f"/runs/{run.json()['id']}/events") as stream:
                for event, data, received in iter_sse(stream):
                    if event == "node_completed":
                        done = datetime.fromisoformat(data["finished_at"]).timestamp()
                        latencies.append((received - done) * 1000)
        cpu.stop()
        p50, p95 = pct(latencies, 0.5), pct(latencies, 0.95)
        row = self.row(
            "SSE delivery (node done -> client)",
            f"p50 {p50:.2f} ms, p95 {p95:.2f} ms",
            f"{len(latencies)} node_completed events over {count} runs of {SSE_CHAIN}",
            p50_ms=p50,
            p95_ms=p95,
            samples=len(latencies),
        )
        return row.charge(cpu, count)


# -- running it -----------------------------------------------------------------------------


def git_label(repo: Path) -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
        ).stdout.strip()

    code = ("service", "graphflow_core", "workflows", "graphflow.py")
    dirty = git("status", "--porcelain", "--", *code)
    return (git("rev-parse", "--short", "HEAD") or "?") + ("+dirty" if dirty else "")


def server_imports(repo: Path) -> str:
    """Where a process started like the server imports its code from (checks ``--repo``)."""
    code = (
        "import service, graphflow_core, bench.workflows as b; "
        "print(service.__path__[0], graphflow_core.__path__[0], b.__file__)"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(dict.fromkeys((str(repo), str(ROOT)))))
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return f"service from {out[0]}, graphflow_core from {out[1]}, bench.workflows from {out[2]}"


def print_table(rows: list[Row]) -> None:
    header = ("scenario", "result", "CPU ms/run", "server CPU util", "DB CPU ms/run")
    cells = [
        (
            r.scenario,
            r.result,
            "-" if r.cpu_ms_per_run is None else f"{r.cpu_ms_per_run:.1f}",
            r.cpu_util,
            "-" if r.db_cpu_ms_per_run is None else f"{r.db_cpu_ms_per_run:.1f}",
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    print("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row, cell in zip(rows, cells, strict=True):
        print("  " + "  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)))
        if row.detail:
            print(f"      {row.detail}")


def bench_backend(
    backend: str, database_url: str, workdir: Path, args: argparse.Namespace, label: str
) -> list[Row]:
    log_path = workdir / f"{backend}.log"
    rows: list[Row] = []
    with (
        serve(database_url, log_path, server_env(), root=args.repo) as server,
        httpx.Client(base_url=server.url, timeout=120) as http,
    ):
        pg_name = None if database_url.startswith("sqlite") else database_url.rpartition("/")[2]
        bench = Bench(server, http, args, backend, label, pg_name)
        print(f"\n== {backend} @ {label}: server pid {server.pid}, {server.url}, log {log_path}")
        print(f"   {bench.check_graph()}")
        for scenario in args.only:
            try:
                row = getattr(bench, scenario)()
            except Exception:
                tail = "\n".join(server.log().splitlines()[-40:])
                print(f"!! {backend}: scenario {scenario!r} failed; server log tail:\n{tail}")
                raise
            rows.append(row)
            print(f"   {row.scenario}: {row.result}", flush=True)
        locked = server.count_in_log(LOCKED)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n{backend} @ {label}  ('{LOCKED}' in the server log: {locked}; load avg {load})")
    print_table(rows)
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per scenario")
    parser.add_argument("--rate", type=float, default=200.0, help="offered runs/s for 'rate'")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help=f"comma separated, of {','.join(SCENARIOS)}"
    )
    parser.add_argument("--repo", type=Path, default=ROOT, help="checkout to run the server from")
    parser.add_argument("--map-width", type=int, default=2000, help="Send fan-out of 'map'")
    parser.add_argument("--map-runs", type=int, default=5, help="runs of 'map' (the median)")
    parser.add_argument("--sse-runs", type=int, default=20, help="runs streamed by 'sse'")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.only) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")
    args.repo = args.repo.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None and {"wait", "poll", "rate"} & set(args.only):
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    label = git_label(args.repo)
    print(
        f"GraphFlow service bench @ {label} ({args.repo}); {os.cpu_count()} CPUs; "
        f"--seconds {args.seconds} --connections {args.connections} --rate {args.rate:g}; "
        f"load avg {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(f"server imports: {server_imports(args.repo)}")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="gf-service-bench-") as tmp:
        workdir = Path(tmp)
        backends: list[tuple[str, contextlib.AbstractContextManager[str]]] = [
            ("sqlite", contextlib.nullcontext(f"sqlite:///{workdir / 'bench.db'}"))
        ]
        if not args.no_postgres:
            backends.append(("postgres", fresh_postgres_database()))
        for backend, database in backends:
            with database as database_url:
                rows += bench_backend(backend, database_url, workdir, args, label)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
