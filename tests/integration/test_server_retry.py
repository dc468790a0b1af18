"""Retry and fork on real servers: a failed run goes on under its id without redoing what
completed; a fork starts a new run from one node run on a patched input."""

from __future__ import annotations

import time
import uuid
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
    stream_events,
    wait_status,
)
from tests.integration.durable_workflows import CHAIN, TEN_STEPS

pytestmark = pytest.mark.slow

ENDED = ("succeeded", "failed", "cancelled")
# Streams end by themselves here: no keep-alive ping may hold one open past the read timeout.
QUIET_STREAMS = {"GRAPHFLOW_SSE_KEEPALIVE_SECONDS": "60"}


def post(url: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=10)


def ten_steps(url: str, tag: str, flag: Path) -> str:
    return create_run(url, "ten_steps", {"tag": tag, "fail_flag": str(flag)})


def test_retry_of_a_run_failed_at_node_7_runs_only_node_7_and_after(
    database_url: str, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    counter, flag = tmp_path / "completions.txt", tmp_path / "fail.flag"
    flag.touch()
    server = start_server(database_url, cli=True, **durable_env(counter), **QUIET_STREAMS)
    rid = ten_steps(server.url, "t", flag)
    failed = wait_status(server.url, rid, ENDED)
    assert failed["status"] == "failed", failed
    assert failed["error"]["node"] == "n07" and "fail.flag exists" in failed["error"]["message"]
    assert completions_by_node(counter, "t") == {n: [server.pid] for n in TEN_STEPS[:6]}
    before = stream_events(server.url, rid)
    assert before[-1]["event"] == "run_failed"
    n07 = next(n for n in failed["nodes"] if n["node"] == "n07")
    assert (n07["status"], n07["attempt"]) == ("failed", 1)

    flag.unlink()
    resp = post(server.url, f"/runs/{rid}/retry")
    assert resp.status_code == 202, resp.text
    assert resp.json()["id"] == rid
    done = wait_status(server.url, rid, ENDED)
    assert done["status"] == "succeeded", done
    assert done["output"]["trace"] == TEN_STEPS
    # n01-n06 completed once, before the failure; n07-n10 once, after the retry.
    assert completions_by_node(counter, "t") == {n: [server.pid] for n in TEN_STEPS}
    attempts = {n["node"]: (n["id"], n["status"], n["attempt"]) for n in done["nodes"]}
    ids = {n["node"]: n["id"] for n in failed["nodes"]}
    assert attempts == {
        n: (ids.get(n, attempts[n][0]), "succeeded", 2 if n == "n07" else 1) for n in TEN_STEPS
    }

    after = stream_events(server.url, rid, after=int(before[-1]["id"]))
    assert after[0]["event"] == "run_retried"
    assert after[0]["data"]["previous_status"] == "failed"
    assert after[0]["data"]["previous_error"]["node"] == "n07"
    assert after[-1]["event"] == "run_succeeded"
    seqs = [int(e["id"]) for e in before + after]
    assert seqs == list(range(1, len(seqs) + 1))  # strictly increasing, no gap
    completed = [e["data"]["node"] for e in after if e["event"] == "node_completed"]
    assert completed == TEN_STEPS[6:]  # the replayed node runs are not announced again
    retried = next(e for e in after if e["data"].get("node") == "n07")
    assert retried["data"]["attempt"] == 2
    assert stream_events(server.url, rid) == before + after  # one stream, read whole afterwards


def test_retry_answers_409_unless_the_run_failed_or_was_cancelled(
    database_url: str, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    counter = tmp_path / "completions.txt"
    env = durable_env(counter, GRAPHFLOW_MAX_CONCURRENT_RUNS="1")
    server = start_server(database_url, cli=True, **env)
    url = server.url
    asking = create_run(url, "two_questions", {"tag": "q"})
    assert wait_status(url, asking, ("interrupted",))["status"] == "interrupted"
    # One run slot: the first chain runs (about 1.2 s) while the second waits in the queue.
    running = create_run(url, "steady_chain", {"tag": "r", "delay": 0.1})
    wait_status(url, running, ("running",))
    queued = create_run(url, "steady_chain", {"tag": "w", "delay": 0})
    assert httpx.get(f"{url}/runs/{queued}").json()["status"] == "queued"

    for run_id, status in [(asking, "interrupted"), (running, "running"), (queued, "queued")]:
        resp = post(url, f"/runs/{run_id}/retry")
        assert resp.status_code == 409, (status, resp.text)
        assert status in resp.json()["detail"]
        assert httpx.get(f"{url}/runs/{run_id}").json()["status"] == status
    assert post(url, f"/runs/{uuid.uuid4()}/retry").status_code == 404

    # A cancelled run is retried: what completed before the cancel is not run again.
    while len(completions_by_node(counter, "r")) < 3:
        time.sleep(0.02)
    assert post(url, f"/runs/{running}/cancel").status_code in (200, 202)
    cancelled = wait_status(url, running, ENDED)
    assert cancelled["status"] == "cancelled"
    kept = {n["node"] for n in cancelled["nodes"] if n["status"] == "succeeded"}
    assert len(kept) >= 3
    assert wait_status(url, queued, ENDED)["status"] == "succeeded"
    retry = post(url, f"/runs/{running}/retry")
    assert retry.status_code == 202, retry.text
    done = wait_status(url, running, ENDED)
    assert done["status"] == "succeeded" and done["output"]["trace"] == CHAIN
    ran = completions_by_node(counter, "r")
    assert sorted(ran) == sorted(CHAIN)
    assert all(len(ran[node]) == 1 for node in kept), ran
    kinds = [e["event"] for e in stream_events(url, running)]
    assert kinds.index("run_cancelled") < kinds.index("run_retried") < kinds.index("run_succeeded")

    again = post(url, f"/runs/{running}/retry")  # it succeeded now
    assert again.status_code == 409, again.text
    assert "succeeded" in again.json()["detail"]


def test_fork_reruns_from_a_node_run_on_a_patched_input_and_refuses_what_it_cannot_fork(
    database_url: str, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    counter, flag = tmp_path / "completions.txt", tmp_path / "never.flag"
    server = start_server(database_url, cli=True, **durable_env(counter), **QUIET_STREAMS)
    url = server.url
    source_id = ten_steps(url, "a", flag)
    source = wait_status(url, source_id, ENDED)
    assert source["status"] == "succeeded", source
    n05 = next(n["id"] for n in source["nodes"] if n["node"] == "n05")
    # ten_steps has no input model; two_questions has one (delay <= 2), and a run that waits
    # may be forked.
    asking_id = create_run(url, "two_questions", {"tag": "q"})
    asking = wait_status(url, asking_id, ("interrupted",))
    legal = next(n["id"] for n in asking["nodes"] if n["node"] == "legal")
    running = create_run(url, "steady_chain", {"tag": "r", "delay": 0.1})
    wait_status(url, running, ("running",))

    missing = post(url, f"/runs/{uuid.uuid4()}/fork", {"from_node_run": n05})
    assert missing.status_code == 404, missing.text
    # A node run the source does not have (404 since NodeRunNotFoundError; it was 422).
    no_node = post(url, f"/runs/{source_id}/fork", {"from_node_run": "9.9.9"})
    assert no_node.status_code == 404, no_node.text
    assert "9.9.9" in no_node.json()["detail"]
    refused = post(
        url, f"/runs/{asking_id}/fork", {"from_node_run": legal, "input_patch": {"delay": 99}}
    )
    assert refused.status_code == 422, refused.text
    assert "delay" in refused.text
    busy = post(url, f"/runs/{running}/fork", {"from_node_run": "0"})
    assert busy.status_code == 409, busy.text
    assert "running" in busy.json()["detail"]
    # Nothing refused made a run, or touched its source.
    listed = httpx.get(f"{url}/runs", params={"limit": 100}).json()["items"]
    assert sorted(r["id"] for r in listed) == sorted([source_id, asking_id, running])
    assert httpx.get(f"{url}/runs/{asking_id}").json() == asking

    resp = post(url, f"/runs/{source_id}/fork", {"from_node_run": n05, "input_patch": {"tag": "b"}})
    assert resp.status_code == 201, resp.text
    fork = resp.json()
    assert fork["id"] != source_id and resp.headers["location"] == f"/runs/{fork['id']}"
    assert fork["graph"] == "ten_steps"
    assert fork["input"] == {**source["input"], "tag": "b"}
    done = wait_status(url, fork["id"], ENDED)
    assert done["status"] == "succeeded", done
    assert done["output"]["trace"] == TEN_STEPS

    assert completions_by_node(counter, "b") == {n: [server.pid] for n in TEN_STEPS[4:]}
    assert completions_by_node(counter, "a") == {n: [server.pid] for n in TEN_STEPS}
    nodes = {n["node"]: n for n in done["nodes"]}
    assert sorted(nodes) == TEN_STEPS and all(n["status"] == "succeeded" for n in nodes.values())
    for old in source["nodes"][:4]:  # reused as they were: same node run, same times
        assert nodes[old["node"]] == old
    stream = stream_events(url, fork["id"])
    assert stream[0]["event"] == "run_forked"
    assert stream[0]["data"]["from_run"] == source_id
    assert stream[0]["data"]["from_node_run"] == n05
    seqs = [int(e["id"]) for e in stream]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    completed = [e["data"]["node"] for e in stream if e["event"] == "node_completed"]
    assert completed == TEN_STEPS[4:]
    assert httpx.get(f"{url}/runs/{source_id}").json() == source  # the source is untouched
    assert stream[0]["data"]["reused_node_runs"] == 4
