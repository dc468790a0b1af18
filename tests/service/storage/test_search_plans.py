"""Every filter of ``GET /runs`` is served by an index: over 20,000 runs (analyzed), neither
database reads the ``runs`` table through for the first page or a later one.

``bench/search_bench.py`` shows the same plans, with timings, over 100,000 runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from service.storage.filters import RunFilter
from service.storage.migrations import upgrade
from service.storage.records import RunStatus
from service.storage.sql import SqlRunStore
from service.storage.tables import Run
from tests.conftest import fresh_postgres_database
from tests.searching import START, Corpus, plan, scans_runs, seed

CORPUS = Corpus(20_000)
MIDDLE = START + timedelta(seconds=CORPUS.count // 4)

# Each filter, and the indexes of which its plan must use one: on SQLite the one named first
# (SQLite plans the same way every time); on Postgres any (its planner weighs them).
CASES: dict[str, tuple[RunFilter, tuple[str, ...]]] = {
    "tag=rare": (RunFilter(tags=["rare"]), ("ix_run_tags_tag",)),
    "tag=common": (RunFilter(tags=["common"]), ("ix_runs_created_at_id", "ix_run_tags_tag")),
    "tag=absent": (RunFilter(tags=["absent"]), ("ix_run_tags_tag",)),
    "tag=common&tag=rare": (RunFilter(tags=["common", "rare"]), ("ix_run_tags_tag",)),
    "metadata.customer=c7": (
        RunFilter(metadata={"customer": "c7"}),
        ("ix_run_metadata_values_key_value",),
    ),
    "metadata.attempt=2": (
        RunFilter(metadata={"attempt": "2"}),
        ("ix_run_metadata_values_key_value", "ix_runs_created_at_id"),
    ),
    "graph=graph-3&created_after": (
        RunFilter(graph="graph-3", created_after=MIDDLE),
        ("ix_runs_graph_created_at_id", "ix_runs_created_at_id"),
    ),
    "status=queued": (
        RunFilter(statuses=[RunStatus.QUEUED]),
        ("ix_runs_status_created_at_id", "ix_runs_status"),
    ),
    "status=succeeded": (
        RunFilter(statuses=[RunStatus.SUCCEEDED]),
        ("ix_runs_status_created_at_id", "ix_runs_created_at_id"),
    ),
    "created_after&created_before": (
        RunFilter(created_after=MIDDLE, created_before=MIDDLE + timedelta(hours=1)),
        ("ix_runs_created_at_id",),
    ),
}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def searched(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SqlRunStore]:
    """A store of ``CORPUS``, seeded once per database for the module's tests."""
    with _database(request.param, tmp_path_factory.mktemp("search")) as url:
        store = SqlRunStore(url, pool_size=2)
        try:
            upgrade(store.write_engine)
            seed(store, CORPUS)
            yield store
        finally:
            store.close()


@contextlib.contextmanager
def _database(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'search.db'}"
    else:
        with fresh_postgres_database() as url:
            yield url


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_filtered_list_reads_runs_through_an_index(searched: SqlRunStore, case: str) -> None:
    where, indexes = CASES[case]
    dialect = searched.read_engine.dialect.name
    later: tuple[datetime, str] = (MIDDLE, CORPUS.run_id(CORPUS.count // 2))
    with searched.read_engine.connect() as conn:
        first = plan(conn, searched.list_runs_statement(conn, where, 21))
        deep = plan(conn, searched.list_runs_statement(conn, where, 21, later))
    shown = "\n".join(first + ["-- a later page:"] + deep)
    assert not scans_runs(first, dialect) and not scans_runs(deep, dialect), shown
    wanted = indexes[:1] if dialect == "sqlite" else indexes
    for lines in (first, deep):
        assert any(index in line for line in lines for index in wanted), shown


def test_the_check_sees_a_plan_that_reads_runs_through(searched: SqlRunStore) -> None:
    """No index serves a function of a column: the plan reads the table, and is caught."""
    unindexed = select(Run).where(func.lower(Run.graph) == "graph-1").limit(21)
    with searched.read_engine.connect() as conn:
        lines = plan(conn, unindexed)
    assert scans_runs(lines, searched.read_engine.dialect.name), lines
