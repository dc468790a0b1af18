"""Runs written straight into a database, with every kind of row a run has: for the retention
tests and ``bench/purge_bench.py`` (which need thousands of old runs in seconds).

Each run gets ``nodes`` node runs, their events with the run's own (``run_started``, one
``node_completed`` per node, and the end's), its tags and metadata values, and, with
``webhook``, a delivered webhook. Rows go in with ``executemany``, ``chunk`` runs per
transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, func, insert, select

from service.storage.filters import metadata_text
from service.storage.records import TERMINAL, DeliveryStatus, NodeRunStatus, RunStatus
from service.storage.sql import SqlRunStore
from service.storage.tables import (
    NodeRun,
    Run,
    RunEvent,
    RunMetadata,
    RunTag,
    WebhookDelivery,
    new_run_values,
    utcnow,
)

__all__ = ["CHILD_TABLES", "create_run", "queued_run_values", "rows_of", "seed_runs"]

# Every table with a row per run (or several), by its run id column.
CHILD_TABLES = tuple(
    cast(Table, t.__table__) for t in (NodeRun, RunEvent, WebhookDelivery, RunTag, RunMetadata)
)


def queued_run_values(run_id: str | None = None, **changes: Any) -> dict[str, Any]:
    """The ``runs`` row of a queued run of graph ``g`` with an empty input, held by owner
    ``me``: the run most store tests need, ``changes`` aside."""
    return new_run_values(**_queued(run_id, changes))


def create_run(store: SqlRunStore, run_id: str | None = None, **changes: Any) -> Run:
    """Store the run ``queued_run_values`` describes through ``store.create_run``."""
    run, _ = store.create_run(**_queued(run_id, changes))
    return run


def _queued(run_id: str | None, changes: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "run_id": run_id or str(uuid.uuid4()),
        "graph": "g",
        "input": {},
        "max_concurrent": None,
        "idempotency_key": None,
        "owner_id": "me",
        "lease_seconds": 30,
        **changes,
    }


def seed_runs(
    store: SqlRunStore,
    count: int,
    *,
    status: RunStatus = RunStatus.SUCCEEDED,
    graph: str = "g",
    finished_at: datetime | None = None,
    created_at: datetime | None = None,
    tags: Sequence[str] = (),
    metadata: Mapping[str, Any] | None = None,
    nodes: int = 2,
    webhook: bool = False,
    payload_bytes: int = 16,
    chunk: int = 2000,
) -> list[str]:
    """Insert ``count`` runs in ``status``; return their ids.

    A finished run's ``finished_at`` defaults to an hour ago; other runs have none unless
    given (to check that a stray one changes nothing). ``payload_bytes``: the size of each
    node's update, to make a database big.
    """
    now = utcnow()
    if finished_at is None and status in TERMINAL:
        finished_at = now - timedelta(hours=1)
    created = created_at or (finished_at or now) - timedelta(seconds=1)
    ids = [str(uuid.uuid4()) for _ in range(count)]
    for start in range(0, count, chunk):
        rows: dict[Table, list[dict[str, Any]]] = {t: [] for t in CHILD_TABLES}
        runs = []
        for run_id in ids[start : start + chunk]:
            run = new_run_values(
                run_id=run_id,
                graph=graph,
                input={"n": 1},
                max_concurrent=None,
                idempotency_key=None,
                owner_id=None,
                lease_seconds=30,
                webhook_url="https://example.com/hook" if webhook else None,
                run_metadata=dict(metadata) if metadata else None,
                tags=list(tags) or None,
            )
            run.update(status=status, created_at=created, started_at=created)
            run.update(finished_at=finished_at, last_seq=nodes + 2)
            runs.append(run)
            for key, table in _run_children(run_id, status, created, nodes, payload_bytes):
                rows[_TABLES[key]].append(table)
            rows[_TABLES["tags"]] += [{"run_id": run_id, "tag": tag} for tag in tags]
            rows[_TABLES["metadata"]] += [
                {"run_id": run_id, "key": k, "value": metadata_text(v)}
                for k, v in (metadata or {}).items()
            ]
            if webhook:
                rows[_TABLES["webhooks"]].append(_delivery(run_id, status, nodes, created))
        with store.transaction() as conn:
            conn.execute(insert(Run), runs)
            for table, table_rows in rows.items():
                if table_rows:
                    conn.execute(insert(table), table_rows)
    return ids


def rows_of(store: SqlRunStore, run_ids: Sequence[str]) -> dict[str, int]:
    """How many rows each table holds for ``run_ids``: ``runs`` and every child table."""
    counts = {}
    with store.read_engine.connect() as conn:
        counts["runs"] = int(conn.scalar(select(func.count()).where(Run.id.in_(run_ids))) or 0)
        for table in CHILD_TABLES:
            stmt = select(func.count()).select_from(table).where(table.c.run_id.in_(run_ids))
            counts[table.name] = int(conn.scalar(stmt) or 0)
    return counts


_TABLES = dict(zip(("nodes", "events", "webhooks", "tags", "metadata"), CHILD_TABLES, strict=True))


def _run_children(
    run_id: str, status: RunStatus, at: datetime, nodes: int, payload_bytes: int
) -> list[tuple[str, dict[str, Any]]]:
    """The node runs and events of one run, keyed by their table."""
    update = {"text": "x" * payload_bytes}
    found = [("events", _event(run_id, 1, "run_started", {"graph": "g"}, at))]
    for i in range(nodes):
        seq = i + 2
        found.append(("events", _event(run_id, seq, "node_completed", {"update": update}, at)))
        node = {
            "run_id": run_id,
            "activation_id": f"0.{i}",
            "node": f"n{i}",
            "status": NodeRunStatus.SUCCEEDED,
            "attempt": 1,
            "parents": [],
            "seq": seq,
            "started_at": at,
            "finished_at": at,
            "duration_ms": 1.0,
            "update": update,
            "goto": [],
            "error": None,
            "completed_seq": seq,
        }
        found.append(("nodes", node))
    if status in TERMINAL:
        found.append(("events", _event(run_id, nodes + 2, f"run_{status}", {}, at)))
    return found


def _event(run_id: str, seq: int, type_: str, data: dict[str, Any], at: datetime) -> dict[str, Any]:
    return {"run_id": run_id, "seq": seq, "type": type_, "data": data, "created_at": at}


def _delivery(run_id: str, status: RunStatus, nodes: int, at: datetime) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "url": "https://example.com/hook",
        "event": f"run_{status}",
        "event_seq": nodes + 2,
        "status": DeliveryStatus.DELIVERED,
        "attempts": 1,
        "last_status_code": 200,
        "last_error": None,
        "next_attempt_at": at,
        "created_at": at,
        "delivered_at": at,
    }
