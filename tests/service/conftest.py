"""Fixtures shared by the service tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.storage.migrations import upgrade
from service.storage.sql import SqlRunStore
from tests.conftest import fresh_postgres_database


@pytest.fixture
def store(database_url: str) -> Iterator[SqlRunStore]:
    """A migrated store on a fresh database (SQLite and Postgres, via ``database_url``)."""
    s = SqlRunStore(database_url, pool_size=4)
    upgrade(s.write_engine)
    yield s
    s.close()


@pytest.fixture
def pg_store() -> Iterator[SqlRunStore]:
    """A migrated store on a fresh Postgres database, for what only Postgres has."""
    with fresh_postgres_database() as url:
        s = SqlRunStore(url, pool_size=4)
        upgrade(s.write_engine)
        yield s
        s.close()
