"""Filtered run lists over 100,000 runs, on SQLite and Postgres: time and plan of each.

For each database this makes a fresh one (a temp SQLite file; a fresh database on the Postgres
server of ``GRAPHFLOW_TEST_POSTGRES_URL``), migrates it, stores ``--runs`` runs with
``tests.searching.seed`` (every 10th run tagged ``common`` with a ``customer`` in its
metadata, every 1,000th also tagged ``rare``; bulk ``executemany``, then ``ANALYZE``), and then
for each filter of ``GET /runs`` lists pages of 20 as the API does (``SqlRunStore.list_runs``,
limit 21): the median time of the first page and of the sixth (after five cursors), the runs
the filter matches, and the plan (``EXPLAIN QUERY PLAN`` / ``EXPLAIN``) of the first page.

It exits 1 when the plan of the first or the sixth page reads the ``runs`` table through
("SCAN runs" without an index on SQLite, "Seq Scan on runs" on Postgres).

    .venv/bin/python bench/search_bench.py [--runs 100000] [--repeat 15] [--no-postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from bench.loadserver import fresh_postgres_database  # noqa: E402
from service.storage.filters import RunFilter  # noqa: E402
from service.storage.migrations import upgrade  # noqa: E402
from service.storage.records import RunStatus  # noqa: E402
from service.storage.sql import SqlRunStore  # noqa: E402
from service.storage.tables import Run  # noqa: E402
from tests.searching import START, Corpus, plan, scans_runs, seed  # noqa: E402

PAGE = 20
Position = tuple[datetime, str]  # a keyset position: (created_at, id) of a page's last run


def cases(corpus: Corpus) -> list[tuple[str, RunFilter]]:
    """The filters measured, as ``GET /runs`` query strings and as ``RunFilter``s."""
    middle = START + timedelta(seconds=corpus.count // 4)
    hour = (middle, middle + timedelta(hours=1))
    return [
        ("tag=rare", RunFilter(tags=["rare"])),
        ("tag=common", RunFilter(tags=["common"])),
        ("tag=common&tag=rare", RunFilter(tags=["common", "rare"])),
        ("tag=absent", RunFilter(tags=["absent"])),
        ("metadata.customer=c7", RunFilter(metadata={"customer": "c7"})),
        ("metadata.attempt=2", RunFilter(metadata={"attempt": "2"})),
        ("graph=graph-3&created_after=<middle>", RunFilter(graph="graph-3", created_after=middle)),
        ("graph=graph-0&tag=rare", RunFilter(graph="graph-0", tags=["rare"])),
        ("status=queued", RunFilter(statuses=[RunStatus.QUEUED])),
        ("status=succeeded", RunFilter(statuses=[RunStatus.SUCCEEDED])),
        (
            "created_after=<middle>&created_before=<+1h>",
            RunFilter(created_after=hour[0], created_before=hour[1]),
        ),
    ]


def median_ms(store: SqlRunStore, where: RunFilter, before: Position | None, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        store.list_runs(where, limit=PAGE + 1, before=before)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def sixth_page(store: SqlRunStore, where: RunFilter) -> Position | None:
    """The cursor position of the sixth page (None when there are fewer pages)."""
    before: Position | None = None
    for _ in range(5):
        rows = store.list_runs(where, limit=PAGE + 1, before=before)
        if len(rows) <= PAGE:
            return None
        before = (rows[PAGE - 1].created_at, rows[PAGE - 1].id)
    return before


def matches(store: SqlRunStore, where: RunFilter) -> int:
    """How many runs ``where`` selects."""
    with store.read_engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(Run).where(where.condition())) or 0)


@contextlib.contextmanager
def database(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/search.db"
    else:
        with fresh_postgres_database() as url:
            yield url


def bench(kind: str, corpus: Corpus, repeat: int) -> bool:
    """Print the table and plans of one database; True when no plan scans ``runs``."""
    with database(kind) as url:
        store = SqlRunStore(url, pool_size=2)
        try:
            upgrade(store.write_engine)
            started = time.perf_counter()
            seed(store, corpus)
            took = time.perf_counter() - started
            print(f"\n## {kind}: {corpus.count:,} runs stored in {took:.1f} s")
            print(f"{'filter':<48} {'matches':>8} {'page 1 ms':>10} {'page 6 ms':>10}  table scan")
            plans = []
            clean = True
            for label, where in cases(corpus):
                first = median_ms(store, where, None, repeat)
                position = sixth_page(store, where)
                later = (
                    "-" if position is None else f"{median_ms(store, where, position, repeat):.2f}"
                )
                with store.read_engine.connect() as conn:
                    lines = plan(conn, store.list_runs_statement(conn, where, PAGE + 1))
                    deep = plan(conn, store.list_runs_statement(conn, where, PAGE + 1, position))
                dialect = store.read_engine.dialect.name
                scan = scans_runs(lines, dialect) or scans_runs(deep, dialect)
                clean = clean and not scan
                print(
                    f"{label:<48} {matches(store, where):>8} {first:>10.2f} {later:>10}  "
                    f"{'YES' if scan else 'no'}"
                )
                plans.append((label, lines))
            for label, lines in plans:
                print(f"\n{kind} {label}:")
                print("\n".join(f"    {line}" for line in lines))
            return clean
        finally:
            store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    corpus = Corpus(args.runs)
    clean = True
    for kind in ["sqlite"] + ([] if args.no_postgres else ["postgres"]):
        clean = bench(kind, corpus, args.repeat) and clean
    print("\nno plan reads the runs table through" if clean else "\nA PLAN READS THE RUNS TABLE")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
