"""GET /metrics: Prometheus counts of real runs through the API, bounded labels, the key."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from service.app import create_app
from tests.conftest import LiveServer, make_settings

UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.I)


def scrape(client: TestClient | httpx.Client) -> list[Sample]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return [s for family in text_string_to_metric_families(response.text) for s in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The one sample named ``name`` with exactly ``labels`` (0 when absent)."""
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else 0.0


def scrape_until(
    client: TestClient | httpx.Client,
    done: Callable[[list[Sample]], bool],
    timeout: float = 10.0,
) -> list[Sample]:
    """Scrape until ``done``: observers are called just after a run's end is stored, so a
    ``?wait=true`` answer can come back a moment before its run is counted."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(client)
        if done(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.02)


@pytest.fixture
def runs_done(database_url: str) -> Iterator[tuple[TestClient, list[Sample]]]:
    """An app after 3 ``three_step`` runs that succeeded and 1 ``failing`` run, and a scrape."""
    with TestClient(create_app(make_settings(database_url))) as client:
        for x in range(3):
            response = client.post("/graphs/three_step/runs?wait=true", json={"input": {"x": x}})
            assert response.json()["status"] == "succeeded"
        response = client.post("/graphs/failing/runs?wait=true", json={"input": {"x": 1}})
        assert response.json()["status"] == "failed"
        samples = scrape_until(
            client,
            lambda s: (
                value(s, "graphflow_runs_finished_total", graph="failing", status="failed") == 1
            ),
        )
        yield client, samples


def test_runs_and_node_runs_are_counted_by_graph_node_and_status(
    runs_done: tuple[TestClient, list[Sample]],
) -> None:
    _, samples = runs_done
    created = [s for s in samples if s.name == "graphflow_runs_created_total"]
    assert sum(s.value for s in created) == 4
    assert value(samples, "graphflow_runs_created_total", graph="three_step") == 3
    assert (
        value(samples, "graphflow_runs_finished_total", graph="three_step", status="succeeded") == 3
    )
    for node in ("a", "b", "c"):
        labels = {"graph": "three_step", "node": node, "status": "succeeded"}
        assert value(samples, "graphflow_node_runs_total", **labels) == 3
        assert value(samples, "graphflow_node_run_duration_seconds_count", **labels) == 3
    failed = {"graph": "failing", "node": "boom", "status": "failed"}
    assert value(samples, "graphflow_node_runs_total", **failed) == 1
    assert value(samples, "graphflow_node_run_duration_seconds_count", **failed) == 1
    # Every run started fresh here: each waited in the queue once.
    waits = [s for s in samples if s.name == "graphflow_run_queue_wait_seconds_count"]
    assert sum(s.value for s in waits) == 4
    batches = value(samples, "graphflow_journal_batch_operations_count")
    assert batches >= 1
    assert value(samples, "graphflow_journal_commit_seconds_count") == batches
    # Each run stores at least its creation, start, node events and end.
    assert value(samples, "graphflow_journal_batch_operations_sum") >= 4 * 3


def test_gauges_read_the_database_and_stream_slots_at_scrape_time(
    runs_done: tuple[TestClient, list[Sample]],
) -> None:
    _, samples = runs_done
    assert value(samples, "graphflow_runs_active", status="queued") == 0
    assert value(samples, "graphflow_runs_active", status="running") == 0
    assert value(samples, "graphflow_sse_streams_open") == 0


def test_open_streams_and_running_runs_are_gauged_while_they_last(
    database_url: str, start_server: Callable[..., LiveServer]
) -> None:
    # A real server: the in-process TestClient ends an event stream as soon as it has read it.
    server = start_server(database_url)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        run = http.post("/graphs/slow_chain/runs", json={"input": {"delay": 0.3}}).json()
        with http.stream("GET", f"/runs/{run['id']}/events") as stream:
            lines = stream.iter_lines()  # kept: a dropped generator closes the response
            assert next(lines) == "id: 1"  # the stream is open once its first line arrives
            during = scrape_until(
                http, lambda s: value(s, "graphflow_runs_active", status="running") == 1
            )
            assert value(during, "graphflow_sse_streams_open") == 1
        assert http.post(f"/runs/{run['id']}/cancel").status_code in (200, 202)
        after = scrape_until(
            http,
            lambda s: (
                value(s, "graphflow_runs_active", status="running") == 0
                and value(s, "graphflow_sse_streams_open") == 0
            ),
        )
    assert value(after, "graphflow_runs_active", status="running") == 0
    assert value(after, "graphflow_sse_streams_open") == 0
    assert value(after, "graphflow_runs_finished_total", graph="slow_chain", status="cancelled")


def test_http_requests_are_counted_by_route_template_never_by_raw_path(
    runs_done: tuple[TestClient, list[Sample]],
) -> None:
    client, samples = runs_done
    posts = {"method": "POST", "route": "/graphs/{name}/runs", "status": "200"}
    assert value(samples, "graphflow_http_requests_total", **posts) == 4
    timed = {"method": "POST", "route": "/graphs/{name}/runs"}
    assert value(samples, "graphflow_http_request_duration_seconds_count", **timed) == 4
    run_id = client.get("/runs").json()["items"][0]["id"]
    client.get(f"/runs/{run_id}")
    client.get("/no/such/path/a1b2")
    samples = scrape(client)
    get_run = {"method": "GET", "route": "/runs/{run_id}", "status": "200"}
    assert value(samples, "graphflow_http_requests_total", **get_run) == 1
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert value(samples, "graphflow_http_requests_total", **unmatched) == 1


def test_no_label_value_is_a_run_id(runs_done: tuple[TestClient, list[Sample]]) -> None:
    client, _ = runs_done
    run_ids = [run["id"] for run in client.get("/runs").json()["items"]]
    for run_id in run_ids:  # reach the routes that take a run id, so they are counted
        client.get(f"/runs/{run_id}")
        client.post(f"/runs/{run_id}/cancel")
    labels = [v for s in scrape(client) for v in s.labels.values()]
    assert labels and len(run_ids) == 4
    assert [v for v in labels if UUID.search(v)] == []


def test_metrics_need_a_key_when_keys_are_set_unless_metrics_are_public(sqlite_url: str) -> None:
    def status(headers: dict[str, str] | None = None, **settings: Any) -> int:
        app = create_app(make_settings(sqlite_url, api_keys=["secret"], **settings))
        with TestClient(app) as client:
            return client.get("/metrics", headers=headers).status_code

    assert status() == 401
    assert status({"Authorization": "Bearer wrong"}) == 401
    assert status({"Authorization": "Bearer secret"}) == 200
    assert status(metrics_public=True) == 200


def test_requests_refused_before_routing_are_counted_under_their_route(sqlite_url: str) -> None:
    app = create_app(make_settings(sqlite_url, api_keys=["secret"]))
    with TestClient(app) as client:
        assert client.get(f"/runs/{uuid.uuid4()}").status_code == 401
        assert client.get("/made/up").status_code == 401
        client.headers["Authorization"] = "Bearer secret"
        samples = scrape(client)
    refused = {"method": "GET", "route": "/runs/{run_id}", "status": "401"}
    assert value(samples, "graphflow_http_requests_total", **refused) == 1
    unmatched = {"method": "GET", "route": "unmatched", "status": "401"}
    assert value(samples, "graphflow_http_requests_total", **unmatched) == 1


def test_each_app_counts_only_its_own_requests(sqlite_url: str) -> None:
    # One registry per app: the process-wide default registry would merge (or refuse) them.
    with TestClient(create_app(make_settings(sqlite_url))) as first:
        first.get("/graphs")
        with TestClient(create_app(make_settings(sqlite_url))) as second:
            samples = scrape(second)
    graphs = {"method": "GET", "route": "/graphs", "status": "200"}
    assert value(samples, "graphflow_http_requests_total", **graphs) == 0


def test_a_resumed_run_is_counted_as_finished_but_not_as_waiting_in_the_queue(
    sqlite_url: str, orphaned_run: str
) -> None:
    with TestClient(create_app(make_settings(sqlite_url))) as client:
        finished = {"graph": "three_step", "status": "succeeded"}
        samples = scrape_until(
            client, lambda s: value(s, "graphflow_runs_finished_total", **finished) == 1
        )
    assert value(samples, "graphflow_runs_finished_total", **finished) == 1
    # Its wait was spent behind the dead process: no queue wait, and no creation here either.
    assert value(samples, "graphflow_run_queue_wait_seconds_count", graph="three_step") == 0
    assert value(samples, "graphflow_runs_created_total", graph="three_step") == 0
