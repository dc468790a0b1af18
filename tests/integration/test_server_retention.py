"""Deleting runs on real servers: ``DELETE /runs/{id}``, ``POST /runs/purge``, ``POST
/runs/cancel`` and the retention sweeper (``GRAPHFLOW_RETENTION_SECONDS``)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.storage.filters import RunFilter
from service.storage.retention import RunRetention
from tests.conftest import LiveServer, WorkerProcess, fresh_postgres_database
from tests.integration.durability import (
    completions_by_node,
    create_run,
    durable_env,
    open_store,
    wait_status,
)
from tests.seeding import rows_of, seed_runs

pytestmark = pytest.mark.slow

FINISHED = ("succeeded", "failed", "cancelled", "timed_out")
# A chain of 12 nodes of 1 s: running for as long as any of these tests lasts.
SLOW = {"delay": 1.0}


def finished_run(url: str, tag: str) -> str:
    run_id = create_run(url, "steady_chain", {"tag": tag, "delay": 0})
    assert wait_status(url, run_id, FINISHED)["status"] == "succeeded"
    return run_id


def failed_run(url: str, tag: str, flag: Path) -> str:
    """A ``ten_steps`` run that fails at node 7 (``flag`` exists)."""
    run_id = create_run(url, "ten_steps", {"tag": tag, "fail_flag": str(flag)})
    assert wait_status(url, run_id, FINISHED)["status"] == "failed"
    return run_id


def interrupted_run(url: str, tag: str) -> str:
    run_id = create_run(url, "two_questions", {"tag": tag})
    assert wait_status(url, run_id, ("interrupted",))["status"] == "interrupted"
    return run_id


def running_run(url: str, tag: str) -> str:
    run_id = create_run(url, "steady_chain", {"tag": tag, **SLOW})
    assert wait_status(url, run_id, ("running",))["status"] == "running"
    return run_id


def status_of(url: str, run_id: str) -> int | str:
    """The run's status, or the HTTP status when it cannot be read (404: deleted)."""
    resp = httpx.get(f"{url}/runs/{run_id}", timeout=5)
    return str(resp.json()["status"]) if resp.status_code == 200 else resp.status_code


def post(url: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=60)


def test_delete_answers_204_for_a_finished_run_409_for_an_unfinished_one_and_404_after(
    database_url: str, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = start_server(database_url, **durable_env(tmp_path / "counter"))
    url = server.url
    done = finished_run(url, "done")
    waiting = interrupted_run(url, "waiting")
    busy = running_run(url, "busy")

    assert httpx.delete(f"{url}/runs/{done}").status_code == 204
    assert status_of(url, done) == 404
    assert httpx.get(f"{url}/runs/{done}/events").status_code == 404
    with open_store(database_url) as store:
        assert not any(rows_of(store, [done]).values())  # node runs and events went too

    for run_id, status in ((busy, "running"), (waiting, "interrupted")):
        resp = httpx.delete(f"{url}/runs/{run_id}")
        assert resp.status_code == 409, resp.text
        detail = resp.json()["detail"]
        assert status in detail and f"POST /runs/{run_id}/cancel" in detail
        assert status_of(url, run_id) == status
    assert httpx.delete(f"{url}/runs/{done}").status_code == 404
    assert httpx.delete(f"{url}/runs/{uuid.uuid4()}").status_code == 404
    assert httpx.delete(f"{url}/runs/not-a-run-id").status_code == 422

    assert post(url, f"/runs/{busy}/cancel", {}).status_code in (200, 202)
    assert wait_status(url, busy, FINISHED)["status"] == "cancelled"
    assert httpx.delete(f"{url}/runs/{busy}").status_code == 204
    assert status_of(url, busy) == 404


def test_purge_counts_on_a_dry_run_then_deletes_only_the_matching_finished_runs(
    database_url: str, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = start_server(database_url, **durable_env(tmp_path / "counter"))
    url = server.url
    flag = tmp_path / "fail"
    flag.touch()
    started = datetime.now(UTC).isoformat()
    chains = [finished_run(url, f"chain{i}") for i in range(3)]
    failed = [failed_run(url, f"failed{i}", flag) for i in range(2)]
    waiting = interrupted_run(url, "waiting")
    busy = running_run(url, "busy")  # a steady_chain too, still running
    everyone = [*chains, *failed, waiting, busy]

    def statuses() -> list[int | str]:
        return [status_of(url, run_id) for run_id in everyone]

    before = statuses()
    # Dry runs (the default) only count: every finished run, then by graph and status.
    assert post(url, "/runs/purge", {}).json() == {"count": 5}
    assert post(url, "/runs/purge", {"graph": "steady_chain"}).json() == {"count": 3}
    assert post(url, "/runs/purge", {"status": ["failed", "cancelled"]}).json() == {"count": 2}
    assert post(url, "/runs/purge", {"finished_before": started}).json() == {"count": 0}
    assert statuses() == before
    # Only finished statuses, aware times and known fields are taken.
    for body in ({"status": "running"}, {"finished_before": "2030-01-01T00:00:00"}, {"x": 1}):
        assert post(url, "/runs/purge", body).status_code == 422, body

    resp = post(url, "/runs/purge", {"graph": "steady_chain", "dry_run": False})
    assert resp.json() == {"count": 3}
    assert [status_of(url, r) for r in everyone] == [404] * 3 + before[3:]
    resp = post(url, "/runs/purge", {"status": "failed", "dry_run": False})
    assert resp.json() == {"count": 2}
    assert [status_of(url, r) for r in everyone] == [404] * 5 + ["interrupted", "running"]
    assert post(url, "/runs/purge", {"dry_run": False}).json() == {"count": 0}
    listed = httpx.get(f"{url}/runs").json()["items"]
    assert sorted(run["id"] for run in listed) == sorted([waiting, busy])


def test_bulk_cancel_ends_queued_running_and_interrupted_runs_matching_the_filter(
    database_url: str, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    counter = tmp_path / "counter"
    # One run slot: the second chain waits in the queue behind the first.
    server = start_server(database_url, **durable_env(counter, GRAPHFLOW_MAX_CONCURRENT_RUNS="1"))
    url = server.url
    done = finished_run(url, "done")
    waiting = interrupted_run(url, "waiting")
    busy = running_run(url, "busy")
    queued = create_run(url, "steady_chain", {"tag": "queued", **SLOW})
    assert status_of(url, queued) == "queued"

    assert post(url, "/runs/cancel", {}).json() == {"count": 3}  # a dry run by default
    assert post(url, "/runs/cancel", {"status": "queued"}).json() == {"count": 1}
    assert post(url, "/runs/cancel", {"status": ["running", "queued"]}).json() == {"count": 2}
    assert post(url, "/runs/cancel", {"graph": "two_questions"}).json() == {"count": 1}
    assert post(url, "/runs/cancel", {"status": "succeeded"}).status_code == 422
    assert [status_of(url, r) for r in (done, waiting, busy, queued)] == [
        "succeeded",
        "interrupted",
        "running",
        "queued",
    ]

    resp = post(url, "/runs/cancel", {"graph": "two_questions", "dry_run": False})
    assert resp.json() == {"count": 1}
    assert status_of(url, waiting) == "cancelled"
    assert status_of(url, busy) == "running"

    assert post(url, "/runs/cancel", {"dry_run": False}).json() == {"count": 2}
    assert wait_status(url, busy, FINISHED)["status"] == "cancelled"
    assert wait_status(url, queued, FINISHED)["status"] == "cancelled"
    assert status_of(url, done) == "succeeded"
    assert post(url, "/runs/cancel", {"dry_run": False}).json() == {"count": 0}
    time.sleep(0.5)  # the slot is free again: a cancelled run must not start
    assert completions_by_node(counter, "queued") == {}
    assert len(completions_by_node(counter, "busy")["c00"]) == 1
    assert completions_by_node(counter, "busy").keys() < {f"c{i:02d}" for i in range(12)}


def test_the_retention_sweeper_deletes_old_finished_runs_and_keeps_unfinished_ones(
    database_url: str, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    env = durable_env(
        tmp_path / "counter",
        GRAPHFLOW_RETENTION_SECONDS="1",
        GRAPHFLOW_RETENTION_SWEEP_SECONDS="0.2",
    )
    server = start_server(database_url, **env)
    url = server.url
    waiting = interrupted_run(url, "waiting")
    busy = running_run(url, "busy")
    done = [finished_run(url, f"done{i}") for i in range(3)]

    deadline = time.monotonic() + 15
    while any(status_of(url, run_id) != 404 for run_id in done):
        assert time.monotonic() < deadline, [status_of(url, r) for r in done]
        time.sleep(0.1)
    with open_store(database_url) as store:
        assert not any(rows_of(store, done).values())
    # Both were created long before the retention period: neither has finished.
    assert status_of(url, waiting) == "interrupted"
    assert status_of(url, busy) == "running"


def test_a_purge_in_progress_ends_between_batches_when_the_server_shuts_down(
    database_url: str, start_server: Callable[..., LiveServer]
) -> None:
    server = start_server(database_url)
    with open_store(database_url) as store:
        seed_runs(store, 10_000, nodes=3)
    answer: list[httpx.Response] = []

    def purge() -> None:
        answer.append(post(server.url, "/runs/purge", {"dry_run": False}))

    thread = threading.Thread(target=purge)
    thread.start()
    time.sleep(1.0)  # a second of 5 ms (SQLite) or 50 ms (Postgres) batches, and their pauses
    stopping = time.monotonic()
    server.proc.terminate()
    server.proc.wait(15)
    thread.join(5)
    # Not held for the rest of the purge: it answered with the runs it deleted.
    assert time.monotonic() - stopping < 10
    assert answer and answer[0].status_code == 200, answer
    deleted = answer[0].json()["count"]
    with open_store(database_url) as store:
        left = RunRetention(store).count(RunFilter())
    assert 0 < deleted < 10_000 and left == 10_000 - deleted


@pytest.mark.postgres
def test_with_an_api_and_two_workers_the_sweep_and_bulk_cancel_reach_across_processes(
    start_server: Callable[..., LiveServer],
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    counter = tmp_path / "counter"
    env = durable_env(
        counter, GRAPHFLOW_RETENTION_SECONDS="1", GRAPHFLOW_RETENTION_SWEEP_SECONDS="0.2"
    )
    with fresh_postgres_database() as database_url:
        api = start_server(database_url, cli=True, command="api", **env)
        workers = [start_worker(database_url, **env) for _ in range(2)]
        url = api.url
        busy = [running_run(url, f"busy{i}") for i in range(2)]
        done = [finished_run(url, f"done{i}") for i in range(2)]

        deadline = time.monotonic() + 15  # swept by a worker: the api process has no sweeper
        while any(status_of(url, run_id) != 404 for run_id in done):
            assert time.monotonic() < deadline, [status_of(url, r) for r in done]
            time.sleep(0.1)
        # The running runs are in the workers: the api asks them to stop.
        assert post(url, "/runs/cancel", {"dry_run": False}).json() == {"count": 2}
        for run_id in busy:
            assert wait_status(url, run_id, FINISHED, timeout=10)["status"] == "cancelled"
        ran_in = {pid for tag in ("busy0", "busy1") for pid in _pids(counter, tag)}
        assert ran_in and ran_in <= {worker.pid for worker in workers}


def _pids(counter: Path, tag: str) -> set[int]:
    """The processes that completed a node of the run tagged ``tag``."""
    return {pid for pids in completions_by_node(counter, tag).values() for pid in pids}


def test_the_openapi_document_declares_every_answer_of_the_three_operations(
    sqlite_url: str, start_server: Callable[..., LiveServer]
) -> None:
    spec = httpx.get(f"{start_server(sqlite_url).url}/openapi.json").json()
    error = {"$ref": "#/components/schemas/ErrorPublic"}
    for path, method, operation_id, ok, errors in [
        ("/runs/{run_id}", "delete", "delete_run", "204", {"400", "404", "409", "422"}),
        ("/runs/purge", "post", "purge_runs", "200", {"400", "422"}),
        ("/runs/cancel", "post", "cancel_runs", "200", {"400", "422"}),
    ]:
        operation = spec["paths"][path][method]
        assert operation["operationId"] == operation_id
        assert {ok, *errors} <= set(operation["responses"]), (path, operation["responses"])
        for code in errors:
            assert operation["responses"][code]["content"]["application/json"]["schema"] == error
    schemas = spec["components"]["schemas"]
    purge = schemas["PurgeRequest"]["properties"]
    assert purge["dry_run"]["default"] is True
    assert set(purge["status"]["anyOf"][0]["enum"]) == set(FINISHED)
    cancel = schemas["CancelRequest"]["properties"]
    assert set(cancel["status"]["anyOf"][0]["enum"]) == {"queued", "running", "interrupted"}
    assert schemas["PurgeRequest"]["additionalProperties"] is False
