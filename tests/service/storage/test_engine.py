"""SQLite engine setup and migrations."""

from __future__ import annotations

import sqlalchemy as sa

from service.storage.engine import make_engine
from service.storage.migrations import upgrade


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    engine.dispose()


def test_sqlite_write_transactions_begin_immediate(sqlite_url: str) -> None:
    writer = make_engine(sqlite_url, write=True)
    with writer.begin() as conn:
        # BEGIN IMMEDIATE takes the write lock up front, before any statement
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1
        raw = conn.connection.driver_connection
        assert raw is not None and raw.in_transaction
    writer.dispose()


def test_migrations_create_the_tables_and_are_idempotent(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    upgrade(engine)
    tables = set(sa.inspect(engine).get_table_names())
    assert {"runs", "node_runs", "run_events", "alembic_version"} <= tables
    columns = {c["name"] for c in sa.inspect(engine).get_columns("runs")}
    assert {"owner_id", "lease_expires_at", "recovery_attempts", "idempotency_key"} <= columns
    engine.dispose()
