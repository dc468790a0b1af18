"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from service.storage.sql import SqlRunStore


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


def test_unknown_path_uses_the_error_shape(client: Any) -> None:
    resp = client.get("/nope")
    assert resp.status_code == 404 and resp.json() == {"detail": "Not Found"}
