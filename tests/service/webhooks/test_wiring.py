"""The processes that execute runs deliver webhooks: ``graphflow serve`` and the worker."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.runtime.worker import run_worker
from service.settings import Role
from service.storage.migrations import upgrade
from service.storage.records import DeliveryStatus
from service.storage.sql import SqlRunStore
from service.webhooks import WebhookDeliverer
from tests.conftest import fresh_postgres_database, make_settings
from tests.service.webhooks.conftest import FAST, Receiver, ended_run, settled


def test_serve_delivers_webhooks_when_it_has_a_secret(
    sqlite_url: str, receiver: Callable[..., Receiver]
) -> None:
    hooks = receiver(200)
    app = create_app(make_settings(sqlite_url, **FAST))
    with TestClient(app):
        assert isinstance(app.state.webhooks, WebhookDeliverer)
        run_id = ended_run(app.state.store, f"{hooks.url}/hook")
        app.state.webhooks.wake()
        [row] = settled(app.state.store, run_id)
    assert row["status"] == DeliveryStatus.DELIVERED
    assert len(hooks.requests) == 1


def test_serve_has_no_deliverer_without_a_secret(sqlite_url: str) -> None:
    app = create_app(make_settings(sqlite_url))
    with TestClient(app):
        assert app.state.webhooks is None


@pytest.mark.postgres
def test_a_worker_delivers_webhooks(receiver: Callable[..., Receiver]) -> None:
    hooks = receiver(200)
    stop = threading.Event()
    with fresh_postgres_database() as url:
        store = SqlRunStore(url, pool_size=2)
        upgrade(store.write_engine)
        run_id = ended_run(store, f"{hooks.url}/hook")
        worker = threading.Thread(
            target=run_worker, args=(make_settings(url, role=Role.WORKER, **FAST), stop)
        )
        worker.start()
        try:
            [row] = settled(store, run_id)
        finally:
            stop.set()
            worker.join(10)
            store.close()
    assert row["status"] == DeliveryStatus.DELIVERED
    assert len(hooks.requests) == 1
