"""Many concurrent runs against one SQLite file: all finish, never "database is locked"."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import LiveServer

pytestmark = pytest.mark.slow


def test_concurrent_runs_on_sqlite_all_succeed_without_lock_errors(
    sqlite_url: str, start_server: Callable[..., LiveServer]
) -> None:
    server = start_server(sqlite_url, GRAPHFLOW_MAX_CONCURRENT_RUNS="8")

    def one(i: int) -> dict[str, object]:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            resp = http.post("/graphs/three_step/runs?wait=true", json={"input": {"x": i}})
            assert resp.status_code == 200, resp.text
            run: dict[str, object] = resp.json()
            return run

    with ThreadPoolExecutor(16) as pool:
        runs = list(pool.map(one, range(48)))
    assert [r["status"] for r in runs] == ["succeeded"] * 48
    assert [r["output"]["x"] for r in runs] == [i * 30 for i in range(48)]  # type: ignore[index]
    log = server.log()
    assert "database is locked" not in log
    assert "Traceback" not in log
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/readyz").status_code == 200
        assert len(http.get("/runs?limit=100").json()["items"]) == 48
