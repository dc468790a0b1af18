"""A long agent loop from a user package runs through the HTTP service on both databases."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import LiveServer

pytestmark = pytest.mark.slow

TURNS = 120


def test_120_turn_agent_loop_with_two_way_fan_out_succeeds_and_stores_every_node_run(
    database_url: str, start_server: Callable[..., LiveServer]
) -> None:
    server = start_server(
        database_url,
        GRAPHFLOW_WORKFLOWS="tests.integration.loop_workflows",
        GRAPHFLOW_RUN_WAIT_TIMEOUT="120",
    )
    with httpx.Client(base_url=server.url, timeout=180) as http:
        resp = http.post("/graphs/agent_loop/runs?wait=true", json={"input": {"turns": TURNS}})
        assert resp.status_code == 200, resp.text
        run = resp.json()
    assert run["status"] == "succeeded", run["error"]
    output = run["output"]
    assert output["seen"] == [2 * turn for turn in range(TURNS + 1)]
    assert output["results"] == [
        f"{tool}{turn}" for turn in range(1, TURNS + 1) for tool in ("search", "fetch")
    ]
    counts = Counter(node["node"] for node in run["nodes"])
    assert counts == {"model": TURNS + 1, "search": TURNS, "fetch": TURNS}
    assert all(node["status"] == "succeeded" for node in run["nodes"])
    ids = [node["id"] for node in run["nodes"]]
    assert len(set(ids)) == len(ids)
    assert max(len(i) for i in ids) <= 12
    assert "Traceback" not in server.log()
