"""Does purging 100,000 runs stall a live server? POST latency without and during a purge.

For each database (SQLite, then Postgres) this starts a server (``bench.loadserver.serve``: the
app ``graphflow serve`` runs, on a free loopback port, a fresh SQLite file or Postgres database),
inserts ``--runs`` finished runs straight into its database (``tests.seeding``: 3 node runs, 5
events, a tag and a metadata value each, finished a day ago), writes them out (``settle``),
and then:

1. warms up: ``wrk`` POSTing ``map_reduce`` runs (one item, 3 node runs, executed by the
   server) at ``--rate`` requests/s for 3 s (``bench/wrk/post_run.lua`` paces the sends);
2. baseline: the same load for ``--seconds``, without a purge;
3. purge: ``POST /runs/purge {"finished_before": <end of the seeding>, "dry_run": false}``
   from a thread, and, half a second later, the same load for ``--seconds`` again;
4. after: once the purge answered, the same load again (the machine's own drift shows in
   the two windows without a purge).

It prints p50/p95 of ``POST /graphs/map_reduce/runs`` before, during and after the purge,
the p95 ratio during / before (the goal: at most 2), how long the purge took and the runs it
deleted per second, and how much of the load window the purge covered (the figures "during"
hold for that share).

    .venv/bin/python bench/purge_bench.py [--runs 100000] [--rate 100] [--seconds 10]
        [--connections 20] [--no-postgres | --no-sqlite]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loadserver import LOCKED, fresh_postgres_database, generous_caps, serve  # noqa: E402
from bench.measuring import WrkResult, run_wrk  # noqa: E402
from service.storage.filters import RunFilter  # noqa: E402
from service.storage.retention import RunRetention, vacuum  # noqa: E402
from service.storage.sql import SqlRunStore  # noqa: E402
from tests.seeding import seed_runs  # noqa: E402

GRAPH = "map_reduce"
BODY = {"input": {"items": ["x"]}}
WARMUP_SECONDS = 3


@dataclass
class Purge:
    """One ``POST /runs/purge`` timed from a thread."""

    started: float = 0.0
    ended: float = 0.0
    status: int = 0
    count: int = 0

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def purge_in_thread(url: str, body: dict[str, Any]) -> tuple[threading.Thread, Purge]:
    purge = Purge()

    def call() -> None:
        purge.started = time.monotonic()
        resp = httpx.post(f"{url}/runs/purge", json=body, timeout=3600)
        purge.ended = time.monotonic()
        purge.status = resp.status_code
        purge.count = resp.json().get("count", 0) if resp.status_code == 200 else 0

    thread = threading.Thread(target=call, name="purge")
    thread.start()
    return thread, purge


def load(url: str, args: argparse.Namespace, seconds: int) -> WrkResult:
    return run_wrk(
        f"{url}/graphs/{GRAPH}/runs",
        seconds=seconds,
        connections=args.connections,
        body=BODY,
        rate=args.rate,
    )


def settle(store: SqlRunStore) -> None:
    """Write the seeded rows out before measuring: on Postgres ``VACUUM (ANALYZE)`` (what
    autovacuum would soon do, during a window) and a checkpoint; on SQLite a checkpoint that
    empties the WAL."""
    if store.sqlite:
        with store.write_engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert driver is not None
            driver.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return
    vacuum(store.write_engine)
    with store.write_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("CHECKPOINT")


def sqlite_size(database_url: str) -> str:
    prefix = "sqlite:///"
    if not database_url.startswith(prefix):
        return "-"
    path = Path(database_url.removeprefix(prefix))
    return f"{path.stat().st_size / 2**20:.0f} MiB"


def bench(backend: str, database_url: str, workdir: Path, args: argparse.Namespace) -> None:
    env = generous_caps(runs=1_000_000, streams=10_000)
    env.update({"GRAPHFLOW_MAX_CONCURRENT_RUNS": "8", "GRAPHFLOW_SHUTDOWN_GRACE_SECONDS": "1"})
    with serve(database_url, workdir / f"{backend}.log", env) as server:
        store = SqlRunStore(database_url, pool_size=2)
        try:
            t0 = time.monotonic()
            seed_runs(
                store,
                args.runs,
                graph="archived",
                finished_at=datetime.now(UTC) - timedelta(days=1),
                nodes=3,
                tags=["nightly"],
                metadata={"team": "ops"},
                payload_bytes=64,
                chunk=5000,
            )
            seeded_s = time.monotonic() - t0
            settle(store)
            cutoff = datetime.now(UTC)
            size_before = sqlite_size(database_url)
            print(f"[{backend}] seeded {args.runs} finished runs in {seeded_s:.1f} s", flush=True)

            body: dict[str, Any] = {"finished_before": cutoff.isoformat()}
            t0 = time.monotonic()
            counted = httpx.post(f"{server.url}/runs/purge", json=body, timeout=600).json()
            dry_s = time.monotonic() - t0
            assert counted == {"count": args.runs}, counted

            load(server.url, args, WARMUP_SECONDS)
            baseline = load(server.url, args, args.seconds)

            thread, purge = purge_in_thread(server.url, {**body, "dry_run": False})
            time.sleep(0.5)
            load_started = time.monotonic()
            during = load(server.url, args, args.seconds)
            load_ended = time.monotonic()
            thread.join()
            after = load(server.url, args, args.seconds)
            left = RunRetention(store).count(RunFilter(finished_before=cutoff))
        finally:
            store.close()
        locked = server.count_in_log(LOCKED)
    covered = max(0.0, min(purge.ended, load_ended) - load_started) / (load_ended - load_started)
    ratio = during.p95_ms / baseline.p95_ms if baseline.p95_ms else float("nan")
    ratio_after = during.p95_ms / after.p95_ms if after.p95_ms else float("nan")
    print(
        f"[{backend}] POST /graphs/{GRAPH}/runs at {args.rate:g}/s offered (-c{args.connections})"
    )
    windows = (("before purge", baseline), ("during purge", during), ("after purge", after))
    for name, wrk in windows:
        print(
            f"  {name:<13} p50 {wrk.p50_ms:6.1f} ms  p95 {wrk.p95_ms:6.1f} ms  "
            f"p99 {wrk.p99_ms:6.1f} ms  max {wrk.max_ms:6.1f} ms  "
            f"{wrk.requests / wrk.duration_s:5.1f} req/s; not 202: {wrk.others('202')}"
        )
    print(
        f"  p95 during / before: {ratio:.2f} (goal: at most 2); during / after: {ratio_after:.2f}"
    )
    print(
        f"  purge: HTTP {purge.status}, {purge.count} runs deleted in {purge.seconds:.1f} s "
        f"= {purge.count / purge.seconds:.0f} runs/s; it covered {covered:.0%} of the load "
        f"window; {left} matching runs left; dry run (count) {dry_s * 1000:.0f} ms"
    )
    print(
        f"  database file {size_before} before, {sqlite_size(database_url)} after; "
        f"'{LOCKED}' in the server log: {locked}",
        flush=True,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=100_000, help="finished runs to purge")
    parser.add_argument("--rate", type=float, default=100.0, help="POSTs/s offered")
    parser.add_argument("--seconds", type=int, default=10, help="each load window")
    parser.add_argument("--connections", type=int, default=20, help="wrk -c")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--no-sqlite", action="store_true", help="Postgres only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"GraphFlow purge bench: {args.runs} runs, POST at {args.rate:g}/s for "
        f"{args.seconds} s each; {os.cpu_count()} CPUs; load avg "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="gf-purge-bench-") as tmp:
        workdir = Path(tmp)
        backends: list[tuple[str, contextlib.AbstractContextManager[str]]] = []
        if not args.no_sqlite:
            backends.append(("sqlite", contextlib.nullcontext(f"sqlite:///{workdir / 'bench.db'}")))
        if not args.no_postgres:
            backends.append(("postgres", fresh_postgres_database()))
        for backend, database in backends:
            with database as database_url:
                bench(backend, database_url, workdir, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
