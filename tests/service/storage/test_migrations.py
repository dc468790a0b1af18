"""Processes starting together on one fresh database migrate it without tripping on each other."""

from __future__ import annotations

import threading

from sqlalchemy import inspect

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
