"""A database outage on a live server: Postgres is stopped and started again in the middle of
60 runs. Requests meanwhile get 503 with Retry-After, never 500; every run finishes once the
database is back, and no node runs twice.

The test restarts the machine's Postgres cluster (as ``.ci/run`` can), so it is marked
``outage``: nothing else runs against Postgres while it does (the suite runs one test at a
time), and the cluster is started again whatever happens.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, fresh_postgres_database
from tests.integration.durability import completions_by_node, durable_env
from tests.integration.durable_workflows import CHAIN

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.outage]

RUNS = 60


def _cluster() -> list[str]:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions or shutil.which("pg_ctlcluster") is None:
        pytest.fail("restarting Postgres needs pg_ctlcluster and /etc/postgresql (Debian)")
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main"]


def _pg_ready() -> bool:
    done = subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"], check=False)
    return done.returncode == 0


@pytest.fixture
def cluster_control() -> Iterator[Callable[[str], None]]:
    """``control("stop")`` / ``control("start")`` of the Postgres cluster; started at teardown."""
    command = _cluster()

    def control(action: str) -> None:
        extra = ["-m", "fast"] if action == "stop" else []
        subprocess.run([*command, action, *extra], check=True, capture_output=True, timeout=60)
        if action == "start":
            deadline = time.monotonic() + 30
            while not _pg_ready():
                assert time.monotonic() < deadline, "Postgres did not come back"
                time.sleep(0.2)

    yield control
    if not _pg_ready():
        control("start")


def _get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=10)


def test_runs_in_flight_finish_after_a_postgres_restart_and_requests_meanwhile_get_503(
    start_server: Callable[..., LiveServer],
    cluster_control: Callable[[str], None],
    tmp_path: Path,
) -> None:
    counter = tmp_path / "completions.txt"
    with fresh_postgres_database() as url:
        server = start_server(url, cli=True, **durable_env(counter, lease=30.0))
        ids = []
        for i in range(RUNS):
            resp = httpx.post(
                f"{server.url}/graphs/steady_chain/runs",
                json={"input": {"tag": f"r{i}", "delay": 0.04}},
                timeout=10,
            )
            assert resp.status_code == 202, resp.text
            ids.append(resp.json()["id"])
        time.sleep(0.5)  # runs are in flight

        cluster_control("stop")
        try:
            create = httpx.post(
                f"{server.url}/graphs/steady_chain/runs",
                json={"input": {"tag": "during", "delay": 0}},
                timeout=30,
            )
            read = _get(f"{server.url}/runs/{ids[0]}")
            ready = _get(f"{server.url}/readyz")
            listing = _get(f"{server.url}/runs")
            time.sleep(1.0)  # the runs go on meanwhile, their events kept in memory
        finally:
            cluster_control("start")

        for resp in (create, read, listing):
            assert resp.status_code == 503, (resp.request.url, resp.status_code, resp.text)
            assert int(resp.headers["Retry-After"]) > 0
            assert "database is unavailable" in resp.json()["detail"]
        assert ready.status_code == 503
        assert ready.json() == {"detail": "database unavailable"}  # no driver text
        assert server.proc.poll() is None  # no crash

        deadline = time.monotonic() + 60
        pending = set(ids)
        while pending:
            assert time.monotonic() < deadline, f"{len(pending)} runs did not finish"
            for run_id in list(pending):
                resp = _get(f"{server.url}/runs/{run_id}")
                if resp.status_code == 200 and resp.json()["status"] not in ("queued", "running"):
                    run = resp.json()
                    assert run["status"] == "succeeded", run
                    assert run["output"]["trace"] == CHAIN
                    pending.discard(run_id)
            time.sleep(0.2)

        for i in range(RUNS):  # every node of every run ran exactly once
            assert completions_by_node(counter, f"r{i}") == {n: [server.pid] for n in CHAIN}
        assert _get(f"{server.url}/readyz").status_code == 200
