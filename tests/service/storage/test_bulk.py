"""Rows sent straight to the driver are stored exactly as SQLAlchemy's own execute stores them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Table, bindparam, cast, insert, select
from sqlalchemy.types import String

from service.storage import queries as q
from service.storage.bulk import BulkInsert
from service.storage.records import EncodedJSON, NodeRunStatus
from service.storage.sql import SqlRunStore
from service.storage.tables import EVENT_COLUMNS, NODE_COLUMNS, NodeRun, RunEvent
from tests.seeding import create_run

NODE_TABLE: Table = NodeRun.__table__  # type: ignore[assignment]
EVENT_TABLE: Table = RunEvent.__table__  # type: ignore[assignment]


def _run(store: SqlRunStore, run_id: str) -> None:
    create_run(store, run_id)


def _node_row(run_id: str, activation_id: str, **changes: Any) -> dict[str, Any]:
    row = {
        "run_id": run_id,
        "activation_id": activation_id,
        "node": "fetch ✓",
        "status": NodeRunStatus.SUCCEEDED,
        "attempt": 2,
        "parents": ["0", "0.1"],
        "seq": 3,
        # Aware in another zone, with and without microseconds: both stored as UTC.
        "started_at": datetime(2026, 5, 1, 12, 0, 0, tzinfo=timezone(timedelta(hours=2))),
        "finished_at": datetime(2026, 5, 1, 10, 0, 1, 250, tzinfo=UTC),
        "duration_ms": 1.5,
        "update": EncodedJSON('{"x": [1, 2.5, "é"]}'),
        "goto": None,
        "error": {"type": "E", "message": "m", "node": "n"},
        "completed_seq": 3,
    }
    return row | changes


def _stored(store: SqlRunStore, table: Table, run_id: str) -> list[tuple[Any, ...]]:
    """The rows as the database holds them: every column read back as text."""
    columns = [cast(c, String) for c in table.c if c.name != "run_id"]
    with store.read_engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(*columns).where(table.c.run_id == run_id))]


@pytest.mark.parametrize("changes", [{}, {"finished_at": None, "update": None, "error": None}])
def test_a_node_row_is_stored_as_sqlalchemy_stores_it(
    store: SqlRunStore, changes: dict[str, Any]
) -> None:
    _run(store, "by-sqlalchemy")
    _run(store, "by-driver")
    dialect = store.write_engine.dialect
    upsert = q.node_upsert(dialect.name)
    bulk = BulkInsert(upsert, NODE_TABLE, NODE_COLUMNS, dialect)
    with store.write_engine.begin() as conn:
        conn.execute(upsert, [_node_row("by-sqlalchemy", "0", **changes)])
        bulk.execute(conn, [_node_row("by-driver", "0", **changes)])
    assert _stored(store, NODE_TABLE, "by-driver") == _stored(store, NODE_TABLE, "by-sqlalchemy")
    assert store.node_runs("by-driver")[0].started_at == datetime(2026, 5, 1, 10, tzinfo=UTC)


def test_an_event_row_is_stored_as_sqlalchemy_stores_it(store: SqlRunStore) -> None:
    _run(store, "by-sqlalchemy")
    _run(store, "by-driver")
    bulk = BulkInsert(insert(EVENT_TABLE), EVENT_TABLE, EVENT_COLUMNS, store.write_engine.dialect)
    now = datetime.now(UTC)
    rows = [
        {"seq": 1, "type": "node_started", "data": EncodedJSON('{"node": "a"}'), "created_at": now},
        {"seq": 2, "type": "run_started", "data": {"graph": "g", "n": None}, "created_at": now},
    ]
    with store.write_engine.begin() as conn:
        conn.execute(insert(EVENT_TABLE), [r | {"run_id": "by-sqlalchemy"} for r in rows])
        bulk.execute(conn, [r | {"run_id": "by-driver"} for r in rows])
    assert _stored(store, EVENT_TABLE, "by-driver") == _stored(store, EVENT_TABLE, "by-sqlalchemy")
    assert [e.data for e in store.events_after("by-driver", 0)] == [
        {"node": "a"},
        {"graph": "g", "n": None},
    ]


def test_a_statement_binding_a_value_the_rows_lack_is_refused(store: SqlRunStore) -> None:
    binds = {c: bindparam(c) for c in EVENT_COLUMNS} | {"type": bindparam("kind")}
    statement = insert(EVENT_TABLE).values(binds)
    with pytest.raises(ValueError, match=r"binds \['kind'\]"):
        BulkInsert(statement, EVENT_TABLE, EVENT_COLUMNS, store.write_engine.dialect)
