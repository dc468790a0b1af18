"""The search rows of runs in SQL: stored with new runs (``insert_search_rows``) and, on
SQLite, weighed to pick the one a list reads from (``driving_search``).

Which rows a run has, and how a filter matches them, is ``service.storage.filters``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from service.storage import queries as q
from service.storage.filters import RunFilter, search_rows

__all__ = ["driving_search", "insert_search_rows"]

# On SQLite, a tag or metadata value with fewer runs than this drives a list (see below).
_FEW_RUNS = 1000


def driving_search(session: Session | Connection, where: RunFilter) -> int | None:
    """Which tag or metadata value of ``where`` SQLite should list from (its index in
    ``where.search_run_ids()``), or None to go through the runs newest first.

    SQLite keeps no statistics of single values, so it cannot weigh the two plans as Postgres
    does: a rare tag found by probing the runs newest first probes every run, and a common
    one read from its index has all its runs read and sorted. Counting the runs of each value, up to
    ``_FEW_RUNS`` of them, decides: the rarest value with fewer runs drives (at most that
    many runs read and sorted); when every value has more, the runs are probed newest first,
    about ``limit * total / _FEW_RUNS`` of them at worst (unless the matches are all old).
    """
    driving, fewest = None, _FEW_RUNS
    for index, run_ids in enumerate(where.search_run_ids()):
        count = int(session.scalar(q.count_upto(run_ids, fewest)) or 0)
        if count < fewest:
            driving, fewest = index, count
    return driving


def insert_search_rows(conn: Connection, runs: Iterable[Mapping[str, Any]]) -> None:
    """Store the ``run_tags`` and ``run_metadata_values`` rows of new runs (their ``runs``
    row values): one statement per table, and none for runs without tags or metadata."""
    tags: list[dict[str, str]] = []
    metadata: list[dict[str, str]] = []
    for run in runs:
        if run.get("tags") or run.get("run_metadata"):
            run_tags, run_metadata = search_rows(run)
            tags += run_tags
            metadata += run_metadata
    if tags:
        conn.execute(q.INSERT_RUN_TAGS, tags)
    if metadata:
        conn.execute(q.INSERT_RUN_METADATA, metadata)
