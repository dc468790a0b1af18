"""The body size middleware, in process."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi.testclient import TestClient

from service.app import create_app
from tests.conftest import make_settings


def test_bodies_over_the_limit_are_413_whether_declared_or_streamed(sqlite_url: str) -> None:
    app = create_app(make_settings(sqlite_url, max_body_bytes=200))
    with TestClient(app) as client:
        big = b'{"input": {"x": 1, "pad": "' + b"y" * 300 + b'"}}'
        resp = client.post(
            "/graphs/three_step/runs", content=big, headers={"content-type": "application/json"}
        )
        assert resp.status_code == 413 and "200 bytes" in resp.json()["detail"]

        def chunks() -> Iterator[bytes]:
            yield big[:150]
            yield big[150:]

        resp = client.post(
            "/graphs/three_step/runs",
            content=chunks(),
            headers={"content-type": "application/json"},
        )
        assert resp.status_code == 413
        assert client.get("/runs").json()["items"] == []
        ok = client.post("/graphs/three_step/runs", json={"input": {"x": 1}})
        assert ok.status_code == 202
