"""Runs that wait for a person (``interrupt()``) on real servers: they survive ``kill -9``, are
resumed one interrupt at a time, keep no run slot while they wait, and end their streams."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, wait_for_status
from tests.integration.durability import (
    completions_by_node,
    create_run,
    durable_env,
    stream_events,
    wait_status,
)
from tests.integration.durable_workflows import CHAIN

pytestmark = pytest.mark.slow

SETTLED = ("succeeded", "failed", "cancelled", "interrupted")
# Streams end by themselves in these tests: no keep-alive ping may hold one open past the
# client's read timeout, which is how a stream that fails to end fails the test.
QUIET_STREAMS = {"GRAPHFLOW_SSE_KEEPALIVE_SECONDS": "60"}


def settled(url: str, run_id: str, timeout: float = 15.0) -> dict[str, Any]:
    """``GET /runs/{id}`` once the run rests: it ended or is interrupted. (A resume stores the
    run as ``queued`` before it answers, so after one this is the next execution's rest.)"""
    run: dict[str, Any] = wait_status(url, run_id, SETTLED, timeout)
    return run


def last_seq(url: str, run_id: str) -> int:
    """The seq of the newest event of a run that rests (its stream from the start ends)."""
    return max((int(e["id"]) for e in stream_events(url, run_id)), default=0)


def all_events(url: str, run_id: str) -> list[dict[str, Any]]:
    """Every event of a run, following it past each ``run_interrupted`` it went on from."""
    found: list[dict[str, Any]] = []
    while True:
        page = stream_events(url, run_id, int(found[-1]["id"]) if found else 0)
        if not page:
            return found
        found += page


def resume(url: str, run_id: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}/runs/{run_id}/resume", json=body, timeout=10)


def interrupted_run(url: str, tag: str) -> dict[str, Any]:
    """A new ``two_questions`` run, once both askers wait."""
    run = settled(url, create_run(url, "two_questions", {"tag": tag}))
    assert run["status"] == "interrupted", run
    assert sorted(i["node"] for i in run["interrupts"]) == ["finance", "legal"]
    return run


def ids_by_node(run: dict[str, Any]) -> dict[str, str]:
    return {i["node"]: i["id"] for i in run["interrupts"]}


def assert_answered(run: dict[str, Any], answers: dict[str, Any]) -> None:
    assert run["status"] == "succeeded", run
    assert run["interrupts"] is None
    assert run["output"]["answers"] == answers
    assert run["output"]["done"] == ["finance", "legal"]
    assert {n["node"]: n["status"] for n in run["nodes"]} == {
        "start": "succeeded",
        "legal": "succeeded",
        "finance": "succeeded",
        "collect": "succeeded",
    }


def test_interrupted_run_survives_kill_9_and_is_resumed_through_the_next_server(
    database_url: str, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    counter = tmp_path / "completions.txt"
    first = start_server(database_url, cli=True, **durable_env(counter))
    before = interrupted_run(first.url, "q")
    first.kill()

    second = start_server(database_url, cli=True, **durable_env(counter))
    time.sleep(0.3)  # a few recovery sweeps of the new server: nothing is taken over
    waiting = httpx.get(f"{second.url}/runs/{before['id']}").json()
    assert waiting["status"] == "interrupted"
    assert waiting["interrupts"] == before["interrupts"]
    assert waiting["nodes"] == before["nodes"]

    ids = ids_by_node(waiting)
    resp = resume(second.url, before["id"], {"values": {ids["legal"]: "ok", ids["finance"]: 7}})
    assert resp.status_code == 202, resp.text
    assert resp.json()["id"] == before["id"]
    done = settled(second.url, before["id"])
    assert_answered(done, {"legal": "ok", "finance": 7})
    legal = next(n for n in done["nodes"] if n["node"] == "legal")
    assert legal["id"] == ids["legal"] and legal["attempt"] == 2

    p1, p2 = first.pid, second.pid
    # Nodes before the interrupt ran once; each asker's code before interrupt() ran once per
    # execution; what follows it, and collect, ran once, in the new server.
    assert completions_by_node(counter, "q") == {
        "start": [p1],
        "legal-asked": [p1, p2],
        "finance-asked": [p1, p2],
        "legal": [p2],
        "finance": [p2],
        "collect": [p2],
    }
    stream = all_events(second.url, before["id"])
    assert [int(e["id"]) for e in stream] == list(range(1, len(stream) + 1))
    kinds = [e["event"] for e in stream]
    assert kinds.count("run_interrupted") == 1 and kinds.count("run_continued") == 1
    assert kinds.index("run_interrupted") < kinds.index("run_continued")
    assert "run_resumed" not in kinds  # a waiting run is not a lost one: nothing recovered
    assert kinds[-1] == "run_succeeded"


def test_resumed_run_whose_server_is_killed_before_it_runs_is_finished_by_the_next_server(
    database_url: str, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    """The resume is accepted (202, stored) but the run has not started again when the server
    dies: its one run slot is busy with a chain, so the kill lands in that window every time."""
    counter = tmp_path / "completions.txt"
    env = durable_env(counter, GRAPHFLOW_MAX_CONCURRENT_RUNS="1")
    first = start_server(database_url, cli=True, **env)
    asked = interrupted_run(first.url, "q")
    blocker = create_run(first.url, "steady_chain", {"tag": "chain", "delay": 0.1})
    with httpx.Client(base_url=first.url) as client:
        assert wait_for_status(client, blocker, ("running",))["status"] == "running"
    ids = ids_by_node(asked)
    resp = resume(first.url, asked["id"], {"values": {ids["legal"]: "yes", ids["finance"]: "no"}})
    assert resp.status_code == 202, resp.text
    assert httpx.get(f"{first.url}/runs/{asked['id']}").json()["status"] == "queued"
    assert httpx.get(f"{first.url}/runs/{blocker}").json()["status"] == "running"
    first.kill()

    second = start_server(database_url, cli=True, **durable_env(counter))
    with httpx.Client(base_url=second.url) as client:
        done = wait_for_status(client, asked["id"], timeout=20)
        chain = wait_for_status(client, blocker, timeout=20)
    assert_answered(done, {"legal": "yes", "finance": "no"})
    assert chain["status"] == "succeeded" and chain["output"]["trace"] == CHAIN

    p1, p2 = first.pid, second.pid
    assert completions_by_node(counter, "q") == {
        "start": [p1],
        "legal-asked": [p1, p2],
        "finance-asked": [p1, p2],
        "legal": [p2],
        "finance": [p2],
        "collect": [p2],
    }
    stream = all_events(second.url, asked["id"])
    assert [int(e["id"]) for e in stream] == list(range(1, len(stream) + 1))
    assert [e["event"] for e in stream].count("run_continued") == 1
    completed = [e["data"]["node"] for e in stream if e["event"] == "node_completed"]
    assert sorted(completed) == ["collect", "finance", "legal", "start"]  # none lost or redone
    assert stream[-1]["event"] == "run_succeeded"


def test_parallel_interrupts_resumed_one_at_a_time_each_stream_ending_at_the_next_rest(
    database_url: str, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    """Each connection ends by itself where the run rests; the next one, with Last-Event-ID,
    goes on from ``run_continued``: together they hold every event once."""
    counter = tmp_path / "completions.txt"
    server = start_server(database_url, cli=True, **durable_env(counter), **QUIET_STREAMS)
    rid = create_run(server.url, "two_questions", {"tag": "q"})
    first = stream_events(server.url, rid)  # opened while the run starts
    assert first[-1]["event"] == "run_interrupted"
    assert first[-1]["data"]["status"] == "interrupted"
    assert [e["event"] for e in first].count("node_interrupted") == 2
    run = httpx.get(f"{server.url}/runs/{rid}").json()
    assert run["status"] == "interrupted"
    assert run["interrupts"] == first[-1]["data"]["interrupts"]
    assert sorted(i["node"] for i in run["interrupts"]) == ["finance", "legal"]
    assert stream_events(server.url, rid, after=int(first[-1]["id"])) == []  # nothing new yet
    ids = ids_by_node(run)

    resp = resume(server.url, rid, {"values": {ids["legal"]: {"ok": True}}})
    assert resp.status_code == 202, resp.text
    second = stream_events(server.url, rid, after=int(first[-1]["id"]))  # at once: read live
    assert second[0]["event"] == "run_continued"
    assert second[0]["data"]["values"] == [ids["legal"]]
    assert second[0]["data"]["waiting"] == [ids["finance"]]
    assert second[-1]["event"] == "run_interrupted"
    again = settled(server.url, rid)
    assert again["status"] == "interrupted"
    # Only finance waits, under the same id as before; legal is done, collect not reached.
    assert again["interrupts"] == [i for i in run["interrupts"] if i["node"] == "finance"]
    assert second[-1]["data"]["interrupts"] == again["interrupts"]
    states = {n["node"]: n["status"] for n in again["nodes"]}
    assert states == {"start": "succeeded", "legal": "succeeded", "finance": "interrupted"}

    # One waits now, so a bare "value" is enough; legal's answer is kept from the first resume.
    resp = resume(server.url, rid, {"value": 1200})
    assert resp.status_code == 202, resp.text
    third = stream_events(server.url, rid, after=int(second[-1]["id"]))
    assert third[0]["event"] == "run_continued"
    assert (third[0]["data"]["values"], third[0]["data"]["waiting"]) == ([ids["finance"]], [])
    assert third[-1]["event"] == "run_succeeded"
    assert "run_interrupted" not in [e["event"] for e in third]
    assert_answered(settled(server.url, rid), {"legal": {"ok": True}, "finance": 1200})

    seqs = [int(e["id"]) for e in first + second + third]
    assert seqs == list(range(1, len(seqs) + 1))  # no gap, no duplicate across connections
    # Read whole afterwards, the stream goes on past the interrupts the run went on from.
    assert stream_events(server.url, rid) == first + second + third
    ran = completions_by_node(counter, "q")
    assert {node: len(pids) for node, pids in ran.items()} == {
        "start": 1,
        "legal-asked": 2,  # the first execution and the first resume
        "finance-asked": 3,  # asked in every execution until it had its value
        "legal": 1,
        "finance": 1,
        "collect": 1,
    }


def test_interrupted_runs_hold_no_slot_and_resume_refusals_change_nothing(
    database_url: str, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    """One run slot: a waiting run that kept it would leave the next runs queued for ever."""
    counter = tmp_path / "completions.txt"
    env = durable_env(counter, GRAPHFLOW_MAX_CONCURRENT_RUNS="1")
    server = start_server(database_url, cli=True, **env)
    url = server.url
    runs = [settled(url, create_run(url, "two_questions", {"tag": f"q{i}"})) for i in range(3)]
    assert [r["status"] for r in runs] == ["interrupted"] * 3
    # ?wait=true answers once the run is interrupted, with what it waits for.
    waited = httpx.post(f"{url}/graphs/two_questions/runs?wait=true", json={"input": {"tag": "w"}})
    assert waited.status_code == 200, waited.text
    assert waited.json()["status"] == "interrupted"
    assert sorted(i["payload"]["question"] for i in waited.json()["interrupts"]) == [
        "finance?",
        "legal?",
    ]
    assert httpx.get(f"{url}/runs/{waited.json()['id']}").json() == waited.json()

    run = runs[0]
    rid, seq, legal = run["id"], last_seq(url, run["id"]), ids_by_node(run)["legal"]
    missing = resume(url, str(uuid.uuid4()), {"value": 1})
    assert missing.status_code == 404, missing.text
    unknown = resume(url, rid, {"values": {legal: "ok", "0.9.9": "?"}})
    assert unknown.status_code == 422, unknown.text
    assert "0.9.9" in unknown.json()["detail"]
    ambiguous = resume(url, rid, {"value": "ok"})  # two wait: which one?
    assert ambiguous.status_code == 422, ambiguous.text
    malformed: list[dict[str, Any]] = [{"values": {legal: "ok"}, "value": "ok"}, {}, {"values": {}}]
    for body in malformed:  # both, neither, and values for nobody
        bad = resume(url, rid, body)
        assert bad.status_code == 422, (body, bad.text)
    # A refused resume changed nothing: not the half of "unknown" it knew, not an event.
    assert httpx.get(f"{url}/runs/{rid}").json() == run
    assert last_seq(url, rid) == seq

    for run in runs:
        ids = ids_by_node(run)
        body = {"values": {ids["legal"]: run["id"], ids["finance"]: run["id"]}}
        assert resume(url, run["id"], body).status_code == 202
    for run in runs:
        assert_answered(settled(url, run["id"]), {"legal": run["id"], "finance": run["id"]})
    conflict = resume(url, rid, {"values": {legal: "again"}})
    assert conflict.status_code == 409, conflict.text
    assert "succeeded" in conflict.json()["detail"]

    # Cancelling a waiting run ends it at once (200, not 202: nothing to wind down).
    cancelled = httpx.post(f"{url}/runs/{waited.json()['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["interrupts"] is None
    stream = stream_events(url, cancelled.json()["id"])
    assert [e["event"] for e in stream[-2:]] == ["run_interrupted", "run_cancelled"]
    late = resume(url, cancelled.json()["id"], {"values": {legal: 1}})
    assert late.status_code == 409, late.text
    assert "legal" not in completions_by_node(counter, "w")
