"""Load benchmark of the HTTP service: many clients, mixed guide workflows, open event streams.

For each database, starts its own server on a free loopback port with a fresh SQLite file or a
fresh Postgres database, then: ``--clients`` concurrent clients create ``--runs`` runs of the six
guide workflows while ``--streams`` of them are streamed; every run and stream is checked; the
server's RSS and fds must come back to baseline; ``--drop-clients`` clients open streams and drop
them. Prints one table per database and exits 1 when a target is missed.

    .venv/bin/python bench/load_bench.py [--runs 5000] [--clients 200] [--streams 200]
                                         [--db sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadscenario import LoadConfig, Report, run_scenario  # noqa: E402
from bench.loadserver import fresh_postgres_database, pg_admin_url  # noqa: E402


@contextlib.contextmanager
def database(backend: str, workdir: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'load.db'}"
    else:
        with fresh_postgres_database(pg_admin_url()) as url:
            yield url


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--drop-clients", type=int, default=500)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument(
        "--max-concurrent-runs", type=int, default=8, help="GRAPHFLOW_MAX_CONCURRENT_RUNS"
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment of the server, e.g. GRAPHFLOW_DB_POOL_SIZE=20 (repeatable)",
    )
    args = parser.parse_args(argv)
    for name in ("runs", "clients", "streams", "drop_clients"):
        if not 1 <= getattr(args, name) <= 100_000:
            parser.error(f"--{name.replace('_', '-')} must be between 1 and 100000")
    if args.streams > args.runs:
        parser.error("--streams cannot exceed --runs")
    return args


def print_report(report: Report) -> None:
    cfg = report.config
    caps = {k: v for k, v in report.server_env.items() if k.startswith("GRAPHFLOW_")}
    print(
        f"\nruns={cfg.runs} clients={cfg.clients} streams={cfg.streams} "
        f"drop clients={cfg.drop_clients} server env={caps}"
    )
    print(report.table())
    samples = [*report.load.error_samples, *report.sse.errors, *report.dropped.drop.error_samples]
    for sample in samples:
        print(f"  sample error: {sample}")
    for run_id in report.lost[:5]:
        print(f"  lost run: {run_id}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    extra = dict(item.split("=", 1) for item in args.server_env)
    config = LoadConfig(
        runs=args.runs,
        clients=args.clients,
        streams=args.streams,
        drop_clients=args.drop_clients,
        max_concurrent_runs=args.max_concurrent_runs,
        extra_env=extra,
    )
    backends = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    missed = False
    with tempfile.TemporaryDirectory(prefix="gf-load-") as tmp:
        for backend in backends:
            workdir = Path(tmp) / backend
            workdir.mkdir()
            t0 = time.monotonic()
            with database(backend, workdir) as url:
                report = run_scenario(backend, url, config, workdir)
            print_report(report)
            print(f"  scenario wall time: {time.monotonic() - t0:.0f} s")
            missed = missed or bool(report.failures())
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
