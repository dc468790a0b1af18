"""Concurrent POSTs with one Idempotency-Key make exactly one run, on a live server."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from service.storage.filters import RunFilter
from tests.conftest import LiveServer
from tests.integration.durability import durable_env, open_store, wait_terminal

pytestmark = pytest.mark.slow

REQUESTS = 50


def test_fifty_concurrent_posts_with_one_idempotency_key_create_exactly_one_run(
    database_url: str, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = start_server(database_url, **durable_env(tmp_path / "completions.txt"))
    barrier = threading.Barrier(REQUESTS)

    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            barrier.wait()  # the requests leave together
            return http.post(
                "/graphs/steady_chain/runs",
                json={"input": {"tag": "once", "delay": 0}},
                headers={"Idempotency-Key": "one-key"},
            )

    with ThreadPoolExecutor(REQUESTS) as pool:
        responses = list(pool.map(post, range(REQUESTS)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * (REQUESTS - 1) + [202], [r.text for r in responses if r.is_error]
    run_ids = {r.json()["id"] for r in responses}
    assert len(run_ids) == 1
    with open_store(database_url) as store:
        runs = store.list_runs(RunFilter(), limit=100)
        assert [r.id for r in runs] == list(run_ids)
        assert wait_terminal(store, runs[0].id).status == "succeeded"
    assert "Traceback" not in server.log()
