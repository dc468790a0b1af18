"""End-to-end benchmark of the HTTP service on SQLite and Postgres.

Starts its own uvicorn on a free loopback port per backend and measures, for the 3-node
``three_step`` test graph: runs/second end to end (POST ?wait=true, several clients), p50/p95 of
plain POST latency, and the delay from a node's completion (server clock) to its
``node_completed`` SSE event reaching a client. Request counts are bounded.

    .venv/bin/python bench/service_bench.py [--runs 200] [--clients 8] [--no-postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadserver import fresh_postgres_database, serve  # noqa: E402

GRAPH = "three_step"
SERVER_ENV = {
    "GRAPHFLOW_WORKFLOWS": "tests.service.sample_workflows",
    "GRAPHFLOW_SHUTDOWN_GRACE_SECONDS": "1",
    "GRAPHFLOW_MAX_CONCURRENT_RUNS": "8",
}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def bench_throughput(url: str, runs: int, clients: int) -> tuple[float, int]:
    def one(i: int) -> bool:
        with httpx.Client(base_url=url, timeout=60) as http:
            r = http.post(f"/graphs/{GRAPH}/runs?wait=true", json={"input": {"x": i}})
            return r.status_code == 200 and r.json()["status"] == "succeeded"

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        ok = sum(pool.map(one, range(runs)))
    return runs / (time.perf_counter() - start), ok


def bench_post_latency(url: str, count: int) -> list[float]:
    latencies = []
    with httpx.Client(base_url=url, timeout=60) as http:
        for i in range(count):
            t0 = time.perf_counter()
            r = http.post(f"/graphs/{GRAPH}/runs", json={"input": {"x": i}})
            latencies.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 202, r.text
        deadline = time.monotonic() + 60  # let the queue drain before the next phase
        while (
            http.get("/runs?status=queued&limit=1").json()["items"]
            or http.get("/runs?status=running&limit=1").json()["items"]
        ):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    return latencies


def bench_sse_latency(url: str, count: int) -> list[float]:
    latencies = []
    with httpx.Client(base_url=url, timeout=60) as http:
        for i in range(count):
            run = http.post(f"/graphs/{GRAPH}/runs", json={"input": {"x": i, "delay": 0.02}}).json()
            with http.stream("GET", f"/runs/{run['id']}/events") as resp:
                buf = ""
                for chunk in resp.iter_text():
                    now = time.time()
                    buf += chunk.replace("\r\n", "\n")
                    while "\n\n" in buf:
                        block, buf = buf.split("\n\n", 1)
                        fields = dict(
                            line.split(": ", 1)
                            for line in block.split("\n")
                            if ": " in line and not line.startswith(":")
                        )
                        if fields.get("event") == "node_completed":
                            data = json.loads(fields["data"])
                            done = datetime.fromisoformat(data["finished_at"]).timestamp()
                            latencies.append((now - done) * 1000)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="runs for throughput (max 2000)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--posts", type=int, default=100, help="POSTs for latency (max 1000)")
    parser.add_argument("--streams", type=int, default=20, help="runs streamed (max 200)")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    runs, posts, streams = min(args.runs, 2000), min(args.posts, 1000), min(args.streams, 200)

    backends: list[tuple[str, contextlib.AbstractContextManager[str]]] = []
    tmp = tempfile.TemporaryDirectory()
    backends.append(("sqlite", contextlib.nullcontext(f"sqlite:///{tmp.name}/bench.db")))
    if not args.no_postgres:
        backends.append(("postgres", fresh_postgres_database()))

    rows = []
    for name, db in backends:
        try:
            with (
                db as database_url,
                serve(database_url, Path(tmp.name) / f"{name}.log", SERVER_ENV) as server,
            ):
                url = server.url
                rps, ok = bench_throughput(url, runs, args.clients)
                post = bench_post_latency(url, posts)
                sse = bench_sse_latency(url, streams)
        except Exception as exc:  # e.g. Postgres not reachable: report and continue
            print(f"{name}: skipped ({exc})", file=sys.stderr)
            continue
        rows.append(
            (
                name,
                f"{rps:.1f}",
                f"{ok}/{runs}",
                f"{pct(post, 0.5):.2f}",
                f"{pct(post, 0.95):.2f}",
                f"{pct(sse, 0.5):.2f}",
                f"{pct(sse, 0.95):.2f}",
                f"{statistics.mean(sse):.2f}" if sse else "nan",
            )
        )
    tmp.cleanup()

    header = (
        "backend",
        "runs/s (wait=true)",
        "ok",
        "POST p50 ms",
        "POST p95 ms",
        "node->SSE p50 ms",
        "node->SSE p95 ms",
        "node->SSE mean ms",
    )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(
        f"graph={GRAPH} (3 nodes), runs={runs}, clients={args.clients}, posts={posts}, "
        f"streamed runs={streams}"
    )
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
