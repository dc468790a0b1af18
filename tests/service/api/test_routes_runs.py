"""HTTP behaviour of the run routes (in-process app, both databases)."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import pytest

from tests.conftest import fresh_postgres_database, make_settings, wait_for_status


def _create(client: Any, graph: str = "three_step", **body: Any) -> Any:
    body.setdefault("input", {"x": 1})
    return client.post(f"/graphs/{graph}/runs", json=body)


def test_create_run_returns_202_with_location_and_runs_to_success(client: Any) -> None:
    resp = _create(client)
    assert resp.status_code == 202
    run = resp.json()
    uuid.UUID(run["id"])
    assert resp.headers["location"] == f"/runs/{run['id']}"
    assert run["graph"] == "three_step" and run["status"] in ("queued", "running", "succeeded")
    done = wait_for_status(client, run["id"])
    assert done["status"] == "succeeded"
    assert done["output"]["x"] == 30 and done["output"]["trace"] == ["a", "b", "c"]
    assert done["input"] == {"x": 1, "delay": 0.0}  # validated, defaults filled in
    assert done["error"] is None and done["duration_ms"] >= 0
    assert [n["node"] for n in done["nodes"]] == ["a", "b", "c"]
    for node in done["nodes"]:
        assert node["status"] == "succeeded" and node["attempt"] == 1
        assert node["duration_ms"] >= 0 and node["started_at"] <= node["finished_at"]
        assert set(node) == {
            "id",
            "node",
            "status",
            "attempt",
            "started_at",
            "finished_at",
            "duration_ms",
            "error",
        }


def test_wait_true_returns_the_finished_run_with_200(client: Any) -> None:
    resp = client.post("/graphs/three_step/runs?wait=true", json={"input": {"x": 2}})
    assert resp.status_code == 200
    assert resp.json()["status"] == "succeeded" and resp.json()["output"]["x"] == 60


def test_wait_true_returns_202_when_the_run_outlasts_the_wait(database_url: str) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(database_url, run_wait_timeout=0.2))
    with TestClient(app) as client:
        resp = client.post("/graphs/slow_chain/runs?wait=true", json={"input": {"delay": 0.2}})
        assert resp.status_code == 202
        assert resp.json()["status"] in ("queued", "running")
        client.post(f"/runs/{resp.json()['id']}/cancel")
        wait_for_status(client, resp.json()["id"])


def test_max_concurrent_is_accepted_and_must_be_positive(client: Any) -> None:
    assert _create(client, max_concurrent=2).status_code == 202
    assert _create(client, max_concurrent=0).status_code == 422


def test_unknown_graph_is_404(client: Any) -> None:
    resp = _create(client, graph="nope")
    assert resp.status_code == 404
    assert "nope" in resp.json()["detail"]


def test_body_must_be_an_object_with_an_object_input(client: Any) -> None:
    for body in ([1, 2], "x", {"input": [1]}, {"input": "s"}, {}, {"input": {}, "extra": 1}):
        resp = client.post("/graphs/three_step/runs", json=body)
        assert resp.status_code == 422, body
        assert "detail" in resp.json()
    resp = client.post(
        "/graphs/three_step/runs",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 422


def test_input_failing_the_input_model_is_422_and_creates_no_run(client: Any) -> None:
    resp = _create(client, input={"x": -1})
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["body", "input", "x"]
    assert client.get("/runs").json()["items"] == []


def test_idempotency_key_returns_the_same_run_with_200(client: Any) -> None:
    headers = {"Idempotency-Key": "key-1"}
    first = client.post("/graphs/three_step/runs", json={"input": {"x": 1}}, headers=headers)
    second = client.post("/graphs/three_step/runs", json={"input": {"x": 1}}, headers=headers)
    assert first.status_code == 202 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["location"] == f"/runs/{first.json()['id']}"
    assert len(client.get("/runs").json()["items"]) == 1


def test_idempotency_key_reused_with_other_input_is_409(client: Any) -> None:
    headers = {"Idempotency-Key": "key-2"}
    assert (
        client.post(
            "/graphs/three_step/runs", json={"input": {"x": 1}}, headers=headers
        ).status_code
        == 202
    )
    resp = client.post("/graphs/three_step/runs", json={"input": {"x": 9}}, headers=headers)
    assert resp.status_code == 409 and "key-2" in resp.json()["detail"]


def test_concurrent_requests_with_one_idempotency_key_make_one_run(client: Any) -> None:
    results: list[Any] = []

    def post() -> None:
        results.append(
            client.post(
                "/graphs/three_step/runs",
                json={"input": {"x": 1}},
                headers={"Idempotency-Key": "race"},
            )
        )

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {r.json()["id"] for r in results} == {results[0].json()["id"]}
    assert sorted(r.status_code for r in results) == [200] * 7 + [202]
    assert len(client.get("/runs").json()["items"]) == 1


def test_get_run_unknown_is_404_and_non_uuid_is_422(client: Any) -> None:
    resp = client.get(f"/runs/{uuid.uuid4()}")
    assert resp.status_code == 404 and "not found" in resp.json()["detail"]
    resp = client.get("/runs/not-a-uuid")
    assert resp.status_code == 422
    assert "UUID" in json.dumps(resp.json()["detail"])


def test_failing_node_is_recorded_and_run_failed(client: Any) -> None:
    run = _create(client, graph="failing", input={"x": 1}).json()
    done = wait_for_status(client, run["id"])
    assert done["status"] == "failed"
    assert done["error"]["type"] == "ValueError" and done["error"]["node"] == "boom"
    assert "on purpose" in done["error"]["message"]
    nodes = {n["node"]: n for n in done["nodes"]}
    assert nodes["a"]["status"] == "succeeded"
    assert nodes["boom"]["status"] == "failed"
    assert nodes["boom"]["error"]["type"] == "ValueError"
    assert client.get("/healthz").status_code == 200


def test_update_that_cannot_be_stored_fails_the_node(client: Any) -> None:
    run = _create(client, graph="unstorable", input={}).json()
    done = wait_for_status(client, run["id"])
    assert done["status"] == "failed"
    assert done["error"]["node"] == "bad" and "JSON" in done["error"]["message"]


def test_database_error_reaches_clients_without_sql_and_the_log_with_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Postgres refuses the node name (text cannot hold NUL): the run fails with a message that
    names neither SQL nor parameters, while the server log keeps the driver's detail."""
    from fastapi.testclient import TestClient

    from service.app import create_app

    with fresh_postgres_database() as url, TestClient(create_app(make_settings(url))) as client:
        run = _create(client, graph="unstorable_node_name", input={"x": 1}).json()
        done = wait_for_status(client, run["id"])
        events = client.get(f"/runs/{run['id']}/events").text
    assert done["status"] == "failed"
    error = done["error"]
    assert error["type"] == "StorageError" and error["node"] == "bad\x00name"
    assert "could not be stored" in error["message"] and "DataError" in error["message"]
    for text in (json.dumps(done), events):
        assert "SQL" not in text and "INSERT" not in text and "node_runs" not in text
    logged = [r for r in caplog.records if r.name == "graphflow.service.runner"]
    assert any("INSERT INTO node_runs" in str(r.exc_info and r.exc_info[1]) for r in logged)


def test_list_runs_newest_first_with_stable_cursor(client: Any) -> None:
    ids = [_create(client, input={"x": i}).json()["id"] for i in range(5)]
    page1 = client.get("/runs?limit=2").json()
    assert [r["id"] for r in page1["items"]] == ids[::-1][:2]
    _create(client, input={"x": 99})  # a new run must not shift the next pages
    page2 = client.get(f"/runs?limit=2&cursor={page1['next_cursor']}").json()
    page3 = client.get(f"/runs?limit=2&cursor={page2['next_cursor']}").json()
    assert [r["id"] for r in page2["items"] + page3["items"]] == ids[::-1][2:]
    assert page3["next_cursor"] is None


def test_list_runs_filters_by_graph_and_status(client: Any) -> None:
    ok = client.post("/graphs/three_step/runs?wait=true", json={"input": {"x": 1}}).json()
    bad = client.post("/graphs/failing/runs?wait=true", json={"input": {}}).json()
    assert [r["id"] for r in client.get("/runs?graph=failing").json()["items"]] == [bad["id"]]
    assert [r["id"] for r in client.get("/runs?status=succeeded").json()["items"]] == [ok["id"]]
    assert client.get("/runs?status=bogus").status_code == 422


def test_list_runs_limit_is_capped_at_100(client: Any) -> None:
    resp = client.get("/runs?limit=101")
    assert resp.status_code == 422 and "100" in json.dumps(resp.json()["detail"])
    assert client.get("/runs?limit=100").status_code == 200
    assert client.get("/runs?limit=0").status_code == 422


def test_bad_cursor_is_400(client: Any) -> None:
    for cursor in ("garbage", "e30", "WyJ4IiwgInkiXQ"):
        resp = client.get(f"/runs?cursor={cursor}")
        assert resp.status_code == 400 and "cursor" in resp.json()["detail"]


def test_cancel_running_run_ends_cancelled_and_starts_nothing_new(client: Any) -> None:
    run = _create(client, graph="slow_chain", input={"delay": 0.2}).json()
    wait_for_status(client, run["id"], ("running",))
    resp = client.post(f"/runs/{run['id']}/cancel")
    assert resp.status_code in (200, 202)
    done = wait_for_status(client, run["id"])
    assert done["status"] == "cancelled"
    assert len(done["nodes"]) < 8
    assert all(n["status"] == "succeeded" for n in done["nodes"])


def test_cancel_of_finished_run_is_409_and_unknown_is_404(client: Any) -> None:
    run = client.post("/graphs/three_step/runs?wait=true", json={"input": {"x": 1}}).json()
    assert client.post(f"/runs/{run['id']}/cancel").status_code == 409
    assert client.post(f"/runs/{uuid.uuid4()}/cancel").status_code == 404


def test_stream_replays_all_events_of_a_finished_run(client: Any) -> None:
    run = client.post("/graphs/three_step/runs?wait=true", json={"input": {"x": 1}}).json()
    with client.stream("GET", f"/runs/{run['id']}/events") as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["x-accel-buffering"] == "no"
        text = "".join(resp.iter_text())
    events = parse_sse(text)
    assert [e["event"] for e in events] == (
        ["run_started"] + ["node_started", "node_completed"] * 3 + ["run_succeeded"]
    )
    assert [int(e["id"]) for e in events] == list(range(1, 9))
    completed = [e["data"] for e in events if e["event"] == "node_completed"]
    assert completed[0]["node"] == "a" and completed[0]["update"] == {"x": 2, "trace": ["a"]}
    assert completed[0]["node_run_id"] and completed[0]["duration_ms"] >= 0


def test_stream_resumes_after_last_event_id_or_after_param(client: Any) -> None:
    run = client.post("/graphs/three_step/runs?wait=true", json={"input": {"x": 1}}).json()
    url = f"/runs/{run['id']}/events"
    with client.stream("GET", url, headers={"Last-Event-ID": "5"}) as resp:
        ids = [int(e["id"]) for e in parse_sse("".join(resp.iter_text()))]
    assert ids == [6, 7, 8]
    with client.stream("GET", f"{url}?after=7") as resp:
        events = parse_sse("".join(resp.iter_text()))
    assert [(e["id"], e["event"]) for e in events] == [("8", "run_succeeded")]


def test_stream_of_unknown_run_is_404(client: Any) -> None:
    assert client.get(f"/runs/{uuid.uuid4()}/events").status_code == 404


def parse_sse(text: str) -> list[dict[str, Any]]:
    """Parse an SSE body into ``{id, event, data}`` dicts (comments skipped)."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            fields[key] = value[1:] if value.startswith(" ") else value
        if "event" in fields:
            fields["data"] = json.loads(fields.get("data", "null"))
            events.append(fields)
    return events


@pytest.mark.parametrize(
    ("graph", "input", "status"),
    [("three_step", {"x": 2}, "succeeded"), ("failing", {}, "failed")],
)
def test_a_waited_run_answers_exactly_as_it_was_stored(
    client: Any, graph: str, input: dict[str, Any], status: str
) -> None:
    """?wait=true answers from the runner's memory; the stored run must read the same."""
    waited = client.post(f"/graphs/{graph}/runs?wait=true", json={"input": input})
    assert waited.status_code == 200, waited.text
    body = waited.json()
    assert body["status"] == status and body["nodes"]
    assert client.get(f"/runs/{body['id']}").json() == body
