"""What counts as a database outage (it passes), and what the journal writer does in one."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy.exc import SQLAlchemyError

from service.errors import DatabaseUnavailableError
from service.runtime.journal import JournalWriter, RunJournal
from service.storage.migrations import upgrade
from service.storage.records import (
    RunStatus,
    database_outage,
    outage_reason,
    storage_failure,
)
from service.storage.sql import SqlRunStore
from tests.seeding import create_run, queued_run_values

# Nothing listens on port 1: every connection is refused, as while Postgres restarts.
UNREACHABLE = "postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=2"


def test_a_refused_postgres_connection_is_an_outage() -> None:
    store = SqlRunStore(UNREACHABLE, pool_size=1)
    try:
        with pytest.raises(SQLAlchemyError) as refused:
            store.get_run("x")
        assert database_outage(refused.value) is refused.value
    finally:
        store.close()


def test_a_read_only_sqlite_file_is_an_outage_that_names_it(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    writable = SqlRunStore(f"sqlite:///{path}", pool_size=1)
    upgrade(writable.write_engine)
    writable.close()
    store = SqlRunStore(f"sqlite:///file:{path}?mode=ro&uri=true", pool_size=1)
    try:
        with pytest.raises(SQLAlchemyError) as refused:
            create_run(store)
        # It passes once the file is writable again, as a full disk once space is freed.
        outage = database_outage(refused.value)
        assert outage is not None and outage is storage_failure(refused.value)
        assert outage_reason(outage) == (
            "the SQLite database is read-only (its file, or the file system it is on)"
        )
    finally:
        store.close()


def test_in_an_outage_creates_fail_at_once_and_run_events_are_kept_not_failed() -> None:
    store = SqlRunStore(UNREACHABLE, pool_size=1)
    writer = JournalWriter(store, lambda changed, ended, events: None)
    writer.start()
    try:
        created = writer.create(queued_run_values())
        with pytest.raises(DatabaseUnavailableError):
            created.result(timeout=10)
        failed_runs: list[BaseException] = []
        head = RunJournal("r1", "me", None, 2, on_failed=failed_runs.append)
        ended = writer.end(head, RunStatus.SUCCEEDED, output={})
        deadline = time.monotonic() + 10
        while not writer.out_of_reach:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(DatabaseUnavailableError):
            writer.create(queued_run_values()).result(timeout=1)  # refused without queueing
        assert not ended.done() and failed_runs == []  # kept, retried: the run is not failed
    finally:
        writer.stop(timeout=10)
        store.close()
    # Stopping gives up on what could not be stored: the next process resumes the run.
    assert isinstance(ended.exception(timeout=1), DatabaseUnavailableError)
