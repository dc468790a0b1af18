"""One ``graphflow api`` and several ``graphflow worker`` processes on one Postgres database."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from service.storage.filters import RunFilter
from tests.conftest import (
    ROOT,
    LiveServer,
    WorkerProcess,
    free_port,
    fresh_postgres_database,
    server_env,
)
from tests.integration.durability import (
    DURABLE_WORKFLOWS,
    create_run,
    durable_env,
    open_store,
    read_completions,
    wait_terminal,
)
from tests.integration.durable_workflows import BRANCHES, CHAIN
from tests.service.api.test_routes_runs import parse_sse

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

# Streams, waits and idle workers look at the database this rarely: what happens within
# seconds below was woken by a notice.
NO_POLLING = {"GRAPHFLOW_POLL_SECONDS": "30"}


@dataclass
class Cluster:
    """``graphflow api`` and ``graphflow worker`` processes on one fresh Postgres database."""

    database_url: str
    start_server: Callable[..., LiveServer]
    start_worker: Callable[..., WorkerProcess]

    def api(self, env: dict[str, str]) -> LiveServer:
        return self.start_server(self.database_url, cli=True, command="api", **env)

    def worker(self, env: dict[str, str]) -> WorkerProcess:
        return self.start_worker(self.database_url, **env)


@pytest.fixture
def cluster(
    start_server: Callable[..., LiveServer], start_worker: Callable[..., WorkerProcess]
) -> Iterator[Cluster]:
    with fresh_postgres_database() as url:
        yield Cluster(url, start_server, start_worker)


def _pid_of(owner_id: str | None) -> int:
    """The process id in an owner id (``host:pid:nonce``)."""
    assert owner_id is not None
    return int(owner_id.split(":")[-2])


def test_an_api_and_two_workers_run_200_mixed_runs_each_node_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    counter = tmp_path / "completions"
    env = durable_env(counter, lease=5.0, GRAPHFLOW_MAX_CONCURRENT_RUNS="4")
    api = cluster.api(env)
    workers = [cluster.worker(env) for _ in range(2)]
    tags = {}
    for i in range(200):
        tag = f"r{i:03d}"
        if i % 2:
            tags[create_run(api.url, "fan_out_20", {"tag": tag, "delay": 0.002})] = tag
        else:
            tags[create_run(api.url, "steady_chain", {"tag": tag, "delay": 0.002})] = tag
    with open_store(cluster.database_url) as store:
        runs = [wait_terminal(store, run_id, timeout=120) for run_id in tags]
    assert Counter(run.status for run in runs) == {"succeeded": 200}
    executed_by = {_pid_of(run.owner_id) for run in runs}
    assert executed_by == {w.pid for w in workers}  # both took runs; the api none
    done = Counter((c.tag, c.node) for c in read_completions(counter))
    expected = {
        (tag, node)
        for i, tag in enumerate(tags.values())
        for node in (["start", *BRANCHES, "join"] if i % 2 else CHAIN)
    }
    assert set(done) == expected
    assert [key for key, times in done.items() if times > 1] == []  # no node ran twice
    pids = Counter(c.pid for c in read_completions(counter))
    assert set(pids) == executed_by


def test_a_worker_runs_no_more_runs_at_once_than_its_slots(
    cluster: Cluster, tmp_path: Path
) -> None:
    env = durable_env(tmp_path / "completions", lease=5.0, GRAPHFLOW_MAX_CONCURRENT_RUNS="2")
    api = cluster.api(env)
    run_ids = [
        create_run(api.url, "steady_chain", {"tag": f"t{i}", "delay": 0.02}) for i in range(8)
    ]
    cluster.worker(env)
    peak = 0
    with open_store(cluster.database_url) as store:
        deadline = time.monotonic() + 60
        while True:
            statuses = Counter(r.status for r in store.list_runs(RunFilter(), limit=20))
            peak = max(peak, statuses["running"])
            if statuses["succeeded"] == len(run_ids):
                break
            assert time.monotonic() < deadline, statuses
            time.sleep(0.01)
    assert peak == 2


def test_a_killed_worker_s_runs_finish_on_the_other_worker(
    cluster: Cluster, tmp_path: Path
) -> None:
    counter = tmp_path / "completions"
    env = durable_env(counter, lease=1.0, GRAPHFLOW_MAX_CONCURRENT_RUNS="2")
    api = cluster.api(env)
    doomed = cluster.worker(env)
    run_ids = [
        create_run(api.url, "steady_chain", {"tag": f"k{i}", "delay": 0.15}) for i in range(2)
    ]
    with open_store(cluster.database_url) as store:
        deadline = time.monotonic() + 20
        while len({c.tag for c in read_completions(counter)}) < 2:  # both mid-run
            assert time.monotonic() < deadline, doomed.log()
            time.sleep(0.02)
        doomed.kill()
        survivor = cluster.worker(env)
        runs = [wait_terminal(store, run_id, timeout=60) for run_id in run_ids]
        assert [run.status for run in runs] == ["succeeded", "succeeded"]
        assert {_pid_of(run.owner_id) for run in runs} == {survivor.pid}
        interrupted = {}
        for run in runs:
            resumed = [e for e in store.events_after(run.id, 0, 1000) if e.type == "run_resumed"]
            assert len(resumed) == 1
            interrupted[run.id] = {n["node"] for n in resumed[0].data["interrupted"]}
    by_node: dict[tuple[str, str], list[int]] = {}
    for c in read_completions(counter):
        by_node.setdefault((c.tag, c.node), []).append(c.pid)
    for i, run_id in enumerate(run_ids):
        pids = {node: by_node[(f"k{i}", node)] for node in CHAIN}
        # Only a node in flight at the kill may run again (it had not been recorded).
        again = {node for node, p in pids.items() if len(p) > 1}
        assert again <= interrupted[run_id], pids
        assert all(len(p) <= 2 for p in pids.values()), pids
        assert {p[0] for p in pids.values()} == {doomed.pid, survivor.pid}  # resumed, not redone


def test_a_stream_from_the_api_sees_every_event_of_a_run_a_worker_executes(
    cluster: Cluster, tmp_path: Path
) -> None:
    env = durable_env(tmp_path / "completions", lease=5.0, **NO_POLLING)
    api = cluster.api(env)
    cluster.worker(env)
    run_id = create_run(api.url, "fan_out_20", {"tag": "s", "delay": 0.01})
    received_at: list[float] = []
    with httpx.stream("GET", f"{api.url}/runs/{run_id}/events", timeout=30) as response:
        body = ""
        for chunk in response.iter_text():
            body += chunk
            received_at.append(time.time())
    events = parse_sse(body)
    seqs = [int(e["id"]) for e in events]
    assert seqs == list(range(1, len(seqs) + 1))  # no gap, no duplicate
    assert events[-1]["event"] == "run_succeeded"
    with open_store(cluster.database_url) as store:
        stored = store.events_after(run_id, 0, 1000)
    assert [(e.seq, e.type) for e in stored] == [(int(e["id"]), e["event"]) for e in events]
    assert received_at[-1] - received_at[0] < 5  # woken by notices: polls are 15-30 s apart


def test_cancel_through_the_api_stops_a_run_on_a_worker_at_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    counter = tmp_path / "completions"
    # Heartbeats 10 s apart: only the notice can deliver the cancel within the bound below.
    env = durable_env(counter, lease=30.0, GRAPHFLOW_HEARTBEAT_SECONDS="10", **NO_POLLING)
    api = cluster.api(env)
    cluster.worker(env)
    run_id = create_run(api.url, "steady_chain", {"tag": "c", "delay": 0.3})
    deadline = time.monotonic() + 15
    while not read_completions(counter):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    asked = time.monotonic()
    assert httpx.post(f"{api.url}/runs/{run_id}/cancel").status_code == 202
    with open_store(cluster.database_url) as store:
        run = wait_terminal(store, run_id, timeout=10)
    assert run.status == "cancelled"
    assert time.monotonic() - asked < 3
    assert len(read_completions(counter)) < len(CHAIN)


def test_a_run_waited_for_through_the_api_answers_when_a_worker_ends_it(
    cluster: Cluster, tmp_path: Path
) -> None:
    env = durable_env(tmp_path / "completions", lease=5.0, **NO_POLLING)
    api = cluster.api(env)
    cluster.worker(env)
    time.sleep(0.3)  # the worker is idle: only the creation's notice can wake it in time
    started = time.monotonic()
    response = httpx.post(
        f"{api.url}/graphs/steady_chain/runs?wait=true",
        json={"input": {"tag": "w", "delay": 0.01}},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeeded"
    assert [n["node"] for n in body["nodes"]] == CHAIN
    assert time.monotonic() - started < 3


def test_resume_and_retry_through_the_api_go_on_at_once_on_a_worker(
    cluster: Cluster, tmp_path: Path
) -> None:
    env = {**durable_env(tmp_path / "completions", lease=5.0), **NO_POLLING}
    api = cluster.api(env)
    cluster.worker(env)
    flag = tmp_path / "fail"
    flag.touch()
    asked = httpx.post(
        f"{api.url}/graphs/two_questions/runs?wait=true", json={"input": {"tag": "a"}}, timeout=30
    ).json()
    failed = httpx.post(
        f"{api.url}/graphs/ten_steps/runs?wait=true",
        json={"input": {"tag": "r", "fail_flag": str(flag)}},
        timeout=30,
    ).json()
    assert (asked["status"], failed["status"]) == ("interrupted", "failed")
    flag.unlink()

    # Polling is off: only the notices of the resume and the retry can wake the worker in time.
    started = time.monotonic()
    values = {i["id"]: i["node"] for i in asked["interrupts"]}
    resumed = httpx.post(f"{api.url}/runs/{asked['id']}/resume", json={"values": values})
    retried = httpx.post(f"{api.url}/runs/{failed['id']}/retry")
    assert (resumed.status_code, retried.status_code) == (202, 202)
    with open_store(cluster.database_url) as store:
        done = [wait_terminal(store, run_id, timeout=10) for run_id in (asked["id"], failed["id"])]
    assert time.monotonic() - started < 5
    assert [run.status for run in done] == ["succeeded", "succeeded"]
    assert done[0].output is not None and done[0].output["answers"] == {
        "legal": "legal",
        "finance": "finance",
    }
    assert all(_pid_of(run.owner_id) != api.pid for run in done)  # a worker ran them


def test_runs_created_with_no_worker_wait_queued_until_one_starts(
    cluster: Cluster, tmp_path: Path
) -> None:
    env = durable_env(tmp_path / "completions", lease=5.0)
    api = cluster.api(env)
    run_id = create_run(api.url, "steady_chain", {"tag": "q", "delay": 0.001})
    time.sleep(0.5)
    assert httpx.get(f"{api.url}/runs/{run_id}").json()["status"] == "queued"
    cluster.worker(env)
    with open_store(cluster.database_url) as store:
        assert wait_terminal(store, run_id, timeout=20).status == "succeeded"


@pytest.mark.parametrize("command", ["api", "worker"])
def test_api_and_worker_refuse_sqlite_naming_serve(command: str, tmp_path: Path) -> None:
    env = server_env(f"sqlite:///{tmp_path / 'g.db'}", GRAPHFLOW_WORKFLOWS=DURABLE_WORKFLOWS)
    output = _refused(command, env)
    assert f"graphflow {command} needs Postgres" in output
    assert "graphflow serve" in output


def test_a_worker_stops_on_sigterm_and_its_health_file_goes_stale(
    cluster: Cluster, tmp_path: Path
) -> None:
    env = durable_env(tmp_path / "completions", lease=1.0)
    worker = cluster.worker(env)
    health = [sys.executable, "-m", "service.cli", "health", "--file", str(worker.health_file)]
    fresh = subprocess.run([*health, "--max-age", "5"], cwd=ROOT, capture_output=True, text=True)
    assert fresh.returncode == 0, fresh.stdout
    worker.proc.terminate()
    assert worker.proc.wait(10) == 0
    time.sleep(0.5)  # no renewals any more: the file's age only grows
    stale = subprocess.run([*health, "--max-age", "0.4"], cwd=ROOT, capture_output=True, text=True)
    assert stale.returncode == 1
    assert "unhealthy: last lease renewal" in stale.stdout


def test_a_worker_serves_the_metrics_of_the_runs_it_executes(
    cluster: Cluster, tmp_path: Path
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    port = free_port()
    env = durable_env(tmp_path / "completions", lease=5.0, GRAPHFLOW_WORKER_METRICS_PORT=str(port))
    api = cluster.api(env)
    cluster.worker(env)
    run_ids = [
        create_run(api.url, "steady_chain", {"tag": f"m{i}", "delay": 0.001}) for i in range(2)
    ]
    with open_store(cluster.database_url) as store:
        assert all(wait_terminal(store, r).status == "succeeded" for r in run_ids)
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    finished = ("graph", "steady_chain"), ("status", "succeeded")
    assert samples[("graphflow_runs_finished_total", finished)] == 2
    first = ("graph", "steady_chain"), ("node", CHAIN[0]), ("status", "succeeded")
    assert samples[("graphflow_node_runs_total", first)] == 2


def test_worker_metrics_without_a_key_check_are_refused_when_api_keys_are_set(
    tmp_path: Path,
) -> None:
    env = server_env(
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        GRAPHFLOW_API_KEYS="k1",
        GRAPHFLOW_WORKER_METRICS_PORT=str(free_port()),
    )
    assert "GRAPHFLOW_METRICS_PUBLIC=true" in _refused("worker", env)


def _refused(command: str, env: dict[str, str]) -> str:
    """What ``graphflow <command>`` printed when it refused to start (exit 2), on one line."""
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    return " ".join((done.stdout + done.stderr).split())
