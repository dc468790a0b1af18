"""Many runs with tags and metadata, stored fast, and the query plans of their lists: the
helpers of the search tests and of ``bench/search_bench.py``.

``Corpus`` describes the runs (run ``i`` of ``count``), ``seed`` stores them with a few
``executemany`` straight to the driver, and ``plan`` and ``scans_runs`` read the plan the
database picks for a statement (``EXPLAIN QUERY PLAN`` on SQLite, ``EXPLAIN`` on Postgres).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import ClauseElement, Connection, Executable, Table, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

from service.storage import queries as q
from service.storage.bulk import BulkInsert
from service.storage.filters import search_rows
from service.storage.records import RunStatus
from service.storage.sql import SqlRunStore
from service.storage.tables import Run, RunMetadata, RunTag, new_run_values

__all__ = ["Corpus", "plan", "scans_runs", "seed"]

START = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Corpus:
    """``count`` runs, two a second from ``START`` (so pages cross runs created at the same
    time), of ``graphs`` graphs in turn. Every ``tagged_every``-th run has the tag
    ``common`` and the metadata ``{"customer": "c<k>", "attempt": <n>}`` (``customers``
    customers in turn); every ``rare_every``-th also the tag ``rare``. Every 50th run is
    queued, every 7th failed, the others succeeded."""

    count: int
    graphs: int = 10
    tagged_every: int = 10
    rare_every: int = 1000
    customers: int = 100

    def run_id(self, i: int) -> str:
        return str(uuid.UUID(int=i + 1))

    def created_at(self, i: int) -> datetime:
        return START + timedelta(seconds=i // 2)

    def values(self, i: int) -> dict[str, Any]:
        """The ``runs`` row of run ``i``."""
        tagged = i % self.tagged_every == 0
        tags = ["common", "rare"] if i % self.rare_every == 0 else ["common"]
        row = new_run_values(
            run_id=self.run_id(i),
            graph=f"graph-{i % self.graphs}",
            input={"i": i},
            max_concurrent=None,
            idempotency_key=None,
            owner_id=None,
            lease_seconds=30,
            run_metadata=self.metadata(i) if tagged else None,
            tags=tags if tagged else None,
        )
        created = self.created_at(i)
        row.update(created_at=created, started_at=None, finished_at=None)
        if i % 50 == 0:
            row["status"] = RunStatus.QUEUED
        else:
            row["status"] = RunStatus.FAILED if i % 7 == 0 else RunStatus.SUCCEEDED
            row.update(started_at=created, finished_at=created + timedelta(seconds=1))
        return row

    def metadata(self, i: int) -> dict[str, Any]:
        customer = (i // self.tagged_every) % self.customers
        return {"customer": f"c{customer}", "attempt": i % 3}


def _batches(corpus: Corpus, size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, corpus.count, size):
        yield [corpus.values(i) for i in range(start, min(start + size, corpus.count))]


def seed(store: SqlRunStore, corpus: Corpus, batch: int = 20_000) -> None:
    """Store the runs of ``corpus`` and their search rows, ``batch`` runs a transaction (one
    ``executemany`` per table), then ``ANALYZE`` so that the planner knows the tables."""
    dialect = store.write_engine.dialect
    runs = cast(Table, Run.__table__)
    inserts = [
        (BulkInsert(q.INSERT_RUN, runs, [c.name for c in runs.columns], dialect), None),
        (
            BulkInsert(
                q.INSERT_RUN_TAGS, cast(Table, RunTag.__table__), ["run_id", "tag"], dialect
            ),
            0,
        ),
        (
            BulkInsert(
                q.INSERT_RUN_METADATA,
                cast(Table, RunMetadata.__table__),
                ["run_id", "key", "value"],
                dialect,
            ),
            1,
        ),
    ]
    blank = dict.fromkeys(runs.columns.keys())  # the columns a queued run leaves unset
    for batch_rows in _batches(corpus, batch):
        rows = [blank | row for row in batch_rows]
        searched = [search_rows(row) for row in rows]
        with store.transaction() as conn:
            for insert, part in inserts:
                if part is None:
                    insert.execute(conn, rows)
                else:
                    insert.execute(conn, [r for pair in searched for r in pair[part]])
    with store.write_engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()


class _Explain(Executable, ClauseElement):
    """``EXPLAIN`` of a statement, its parameters bound as the statement binds them."""

    inherit_cache = False

    def __init__(self, statement: Any) -> None:
        self.statement = statement


@compiles(_Explain)
def _compile_explain(element: _Explain, compiler: SQLCompiler, **kw: Any) -> str:
    prefix = "EXPLAIN QUERY PLAN " if compiler.dialect.name == "sqlite" else "EXPLAIN "
    return prefix + compiler.process(element.statement, **kw)


def plan(conn: Connection, statement: Any) -> list[str]:
    """The lines of the plan the database picks for ``statement``: the ``detail`` column of
    SQLite's ``EXPLAIN QUERY PLAN``, the text of Postgres's ``EXPLAIN``."""
    rows = conn.execute(_Explain(statement)).all()
    if conn.dialect.name == "sqlite":
        return [str(row[3]) for row in rows]
    return [str(row[0]) for row in rows]


_SQLITE_TABLE_SCAN = re.compile(r"^SCAN runs\b(?!.*\bUSING\b)")
_POSTGRES_TABLE_SCAN = re.compile(r"\bSeq Scan on runs\b")


def scans_runs(lines: list[str], dialect: str) -> bool:
    """Whether a plan reads the ``runs`` table through, not by an index."""
    pattern = _SQLITE_TABLE_SCAN if dialect == "sqlite" else _POSTGRES_TABLE_SCAN
    return any(pattern.search(line.strip()) for line in lines)
