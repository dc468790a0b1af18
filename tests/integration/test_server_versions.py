"""Graph versions on real servers: a run killed mid-way is not resumed silently by a server that
loaded another shape of its graph; it fails naming both versions, and a retry moves it on
purpose. A graph registered with ``on_version_change="resume"`` resumes on the new shape."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.integration.durability import (
    completions_by_node,
    create_run,
    durable_env,
    wait_status,
)
from tests.integration.durable_workflows import SHAPE_ENV, SHAPES

pytestmark = pytest.mark.slow

ENDED = ("succeeded", "failed", "cancelled", "timed_out")


def _server(
    start_server: Callable[..., LiveServer], database_url: str, counter: Path, shape: str
) -> LiveServer:
    return start_server(database_url, cli=True, **durable_env(counter, **{SHAPE_ENV: shape}))


def _version(server: LiveServer, graph: str) -> str:
    detail = httpx.get(f"{server.url}/graphs/{graph}").json()
    summary = next(g for g in httpx.get(f"{server.url}/graphs").json() if g["name"] == graph)
    assert summary["version"] == detail["version"]
    version: str = detail["version"]
    return version


def _killed_mid_way(server: LiveServer, graph: str, counter: Path) -> dict[str, Any]:
    """Start a run of ``graph`` (0.3 s a node), kill ``server`` once two nodes completed, and
    return the run as it was just before."""
    rid = create_run(server.url, graph, {"tag": "t", "delay": 0.3})
    while len(completions_by_node(counter, "t")) < 2:
        time.sleep(0.02)
    run: dict[str, Any] = httpx.get(f"{server.url}/runs/{rid}").json()
    server.kill()
    assert run["status"] == "running"
    return run


def test_a_run_resumed_on_a_changed_graph_fails_naming_both_versions_until_retried(
    database_url: str, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    counter = tmp_path / "completions.txt"
    first = _server(start_server, database_url, counter, "short")
    short = _version(first, "shifting_chain")
    before = _killed_mid_way(first, "shifting_chain", counter)
    assert before["graph_version"] == short

    second = _server(start_server, database_url, counter, "long")
    long = _version(second, "shifting_chain")
    assert long != short
    run = wait_status(second.url, before["id"], ENDED, timeout=20)
    assert run["status"] == "failed", run
    assert run["error"]["type"] == "GraphVersionChanged"
    assert f"from version {short} to {long}" in run["error"]["message"]
    assert run["graph_version"] == short
    ran = completions_by_node(counter, "t")
    assert all(pids == [first.pid] for pids in ran.values()), ran  # nothing ran on `long`

    resp = httpx.post(f"{second.url}/runs/{before['id']}/retry", timeout=10)
    assert resp.status_code == 202, resp.text
    assert resp.json()["graph_version"] == long
    done = wait_status(second.url, before["id"], ENDED, timeout=20)
    assert done["status"] == "succeeded", done
    assert done["output"]["trace"] == SHAPES["long"]
    # The nodes completed before the kill replayed; the rest ran once, on the new shape.
    assert sorted(completions_by_node(counter, "t")) == SHAPES["long"]


def test_a_graph_that_allows_it_resumes_its_runs_on_the_new_shape(
    database_url: str, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    counter = tmp_path / "completions.txt"
    first = _server(start_server, database_url, counter, "short")
    short = _version(first, "shifting_chain_resumable")
    detail = httpx.get(f"{first.url}/graphs/shifting_chain_resumable").json()
    assert detail["on_version_change"] == "resume"
    before = _killed_mid_way(first, "shifting_chain_resumable", counter)

    second = _server(start_server, database_url, counter, "long")
    assert _version(second, "shifting_chain_resumable") != short
    run = wait_status(second.url, before["id"], ENDED, timeout=20)
    assert run["status"] == "succeeded", run
    assert run["output"]["trace"] == SHAPES["long"]
    assert run["graph_version"] == short  # the version it started on
    ran = completions_by_node(counter, "t")
    assert sorted(ran) == SHAPES["long"] and all(len(pids) == 1 for pids in ran.values())
    assert ran["v5"] == [second.pid]
