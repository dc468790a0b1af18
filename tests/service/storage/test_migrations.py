"""Processes starting together on one fresh database migrate it without tripping on each other."""

from __future__ import annotations

import threading

from sqlalchemy import Text, inspect, text

from service.storage.migrations import upgrade
from service.storage.sql import SqlRunStore


def test_concurrent_upgrades_of_a_fresh_database_all_succeed(database_url: str) -> None:
    stores = [SqlRunStore(database_url, pool_size=1) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def migrate(store: SqlRunStore) -> None:
        barrier.wait()
        try:
            upgrade(store.write_engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert errors == []
        tables = set(inspect(stores[0].write_engine).get_table_names())
        assert {"runs", "node_runs", "run_events", "alembic_version"} <= tables
    finally:
        for store in stores:
            store.close()


def test_upgrade_from_0001_keeps_runs_and_makes_names_text(database_url: str) -> None:
    store = SqlRunStore(database_url, pool_size=1)
    try:
        upgrade(store.write_engine, "0001")
        with store.write_engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO runs (id, graph, status, input, created_at, recovery_attempts,"
                    " cancel_requested, last_seq) VALUES ('r1', 'g', 'queued', '{}',"
                    " CURRENT_TIMESTAMP, 0, false, 0)"
                )
            )
        upgrade(store.write_engine)
        run = store.get_run("r1")
        assert run is not None and run.graph == "g" and run.status == "queued"
        if store.write_engine.dialect.name == "postgresql":
            columns = {
                c["name"]: c["type"] for c in inspect(store.write_engine).get_columns("runs")
            }
            assert isinstance(columns["graph"], Text) and isinstance(columns["owner_id"], Text)
    finally:
        store.close()
