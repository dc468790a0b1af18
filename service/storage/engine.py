"""Engine creation. SQLite gets WAL, a busy timeout, foreign keys, incremental auto-vacuum and
``BEGIN IMMEDIATE`` writes. ``advisory_turn``: one process at a time, across processes.

pysqlite's own transaction handling is switched off (``isolation_level=None``) and the ``begin``
event emits the BEGIN itself: write engines use ``BEGIN IMMEDIATE`` so a writer takes the lock up
front instead of failing with "database is locked" when upgrading a read lock; read engines use a
plain (deferred) ``BEGIN`` so readers never block on writers under WAL.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from service.storage.records import json_serializer

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Page cache per pooled connection. The OS caches the file anyway; a large private cache per
# connection would pin tens of MB after a burst of load (SQLite's default is 2 MiB each).
SQLITE_CACHE_KIB = 256


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str, *, write: bool = True, pool_size: int = 10) -> Engine:
    """Create an engine for ``url``; for SQLite, ``write`` selects ``BEGIN IMMEDIATE``."""
    if not is_sqlite(url):
        return create_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            json_serializer=json_serializer,
        )
    engine = create_engine(
        url,
        json_serializer=json_serializer,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        pool_size=pool_size,
        max_overflow=pool_size,
    )
    begin_sql = "BEGIN IMMEDIATE" if write else "BEGIN"

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # Before anything creates a table: only then does it apply (on a file that has tables
        # it waits for a VACUUM, ``graphflow vacuum``). Freed pages can then be given back to
        # the file system (``PRAGMA incremental_vacuum``) after runs are deleted.
        # Set only when not yet so: a read-only file (or file system) refuses the setting.
        if cursor.execute("PRAGMA auto_vacuum").fetchone()[0] != _INCREMENTAL:
            cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
        if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            _enable_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin_sql)

    return engine


_INCREMENTAL = 2  # what ``PRAGMA auto_vacuum`` reads for INCREMENTAL


def _enable_wal(cursor: Any) -> None:
    """Switch to WAL, retrying: the switch needs an exclusive lock, and SQLite reports
    "database is locked" at once, without its busy handler, while another process holds one
    (several servers starting together on a fresh file)."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@contextlib.contextmanager
def advisory_turn(engine: Engine, key: int) -> Iterator[bool]:
    """Whether this process may take its turn at a job now (a sweep): on Postgres, one process
    at a time, by a session advisory lock on ``key`` held for the block; always on SQLite.

    The lock's connection is in autocommit: a long turn holds no transaction open.
    """
    if engine.dialect.name == "sqlite":
        yield True
        return
    params = {"key": key}
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        taken = bool(conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), params))
        try:
            yield taken
        finally:
            if taken:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), params)
