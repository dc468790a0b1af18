"""Fixtures of the observability tests."""

from __future__ import annotations

import uuid

import pytest

from service.storage.migrations import upgrade
from service.storage.sql import SqlRunStore


@pytest.fixture
def orphaned_run(sqlite_url: str) -> str:
    """The id of a ``three_step`` run started by a process that died at once: the next app on
    ``sqlite_url`` resumes it."""
    store = SqlRunStore(sqlite_url, pool_size=1)
    try:
        upgrade(store.write_engine)
        run, _ = store.create_run(
            run_id=str(uuid.uuid4()),
            graph="three_step",
            input={"x": 1},
            max_concurrent=None,
            idempotency_key=None,
            owner_id="dead",
            lease_seconds=30,
        )
        store.claim_run(run.id, "dead", -1)  # its lease expired as it was taken
        return run.id
    finally:
        store.close()
