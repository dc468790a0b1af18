"""Liveness and readiness probes."""

from __future__ import annotations

import socket
import time
from typing import Any

from fastapi.testclient import TestClient

from service.app import create_app
from service.storage.sql import SqlRunStore
from tests.conftest import make_settings


def test_healthz_and_readyz_are_200_while_the_database_answers(client: Any) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_readyz_is_503_when_the_database_does_not_answer(client: Any) -> None:
    app = client.app
    good = app.state.store
    app.state.store = SqlRunStore("postgresql+psycopg://postgres@127.0.0.1:1/x?connect_timeout=1")
    try:
        resp = client.get("/readyz")
        assert resp.status_code == 503 and "database unavailable" in resp.json()["detail"]
        assert client.get("/healthz").status_code == 200
    finally:
        app.state.store.close()
        app.state.store = good


def test_readyz_reason_is_generic_without_the_driver_text(client: Any) -> None:
    app = client.app
    good = app.state.store
    app.state.store = SqlRunStore("postgresql+psycopg://nobody@127.0.0.1:1/x?connect_timeout=1")
    try:
        resp = client.get("/readyz")
    finally:
        app.state.store.close()
        app.state.store = good
    assert resp.status_code == 503 and resp.json() == {"detail": "database unavailable"}


def test_readyz_answers_503_in_time_while_the_database_hangs(sqlite_url: str) -> None:
    """A server that accepts connections and never answers: the ping hangs in its thread, and
    readyz still answers within its timeout, again and again."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)  # connections complete in the backlog; nothing ever answers them
        port = hung.getsockname()[1]
        settings = make_settings(sqlite_url, readyz_timeout_seconds=0.3)
        with TestClient(create_app(settings)) as client:
            good = client.app.state.store  # type: ignore[attr-defined]
            store = SqlRunStore(f"postgresql+psycopg://postgres@127.0.0.1:{port}/x")
            client.app.state.store = store  # type: ignore[attr-defined]
            try:
                for _ in range(3):
                    started = time.monotonic()
                    resp = client.get("/readyz")
                    assert time.monotonic() - started < 2.0
                    assert resp.status_code == 503
                    assert resp.json() == {"detail": "database unavailable"}
                assert client.get("/healthz").status_code == 200
            finally:
                client.app.state.store = good  # type: ignore[attr-defined]
    store.close()  # the listener is closed: the hung ping fails and its thread ends


def test_unknown_path_uses_the_error_shape(client: Any) -> None:
    resp = client.get("/nope")
    assert resp.status_code == 404 and resp.json() == {"detail": "Not Found"}
