"""Malformed, oversized and abusive requests get a clear 4xx, never a 500."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from service.app import create_app
from tests.conftest import make_settings, wait_for_status

JSON = {"content-type": "application/json"}


def test_json_nested_ten_thousand_levels_is_400_naming_the_depth_limit(client: Any) -> None:
    bodies = [
        b"[" * 10_000 + b"]" * 10_000,
        b'{"input": ' + b'{"a": ' * 10_000 + b"1" + b"}" * 10_001,
    ]
    for body in bodies:
        resp = client.post("/graphs/failing/runs", content=body, headers=JSON)
        assert resp.status_code == 400, resp.text
        assert "64 levels" in resp.json()["detail"] and "GRAPHFLOW_MAX_JSON_DEPTH" in resp.text
    assert client.get("/runs").json()["items"] == []


def test_depth_limit_is_configurable_and_bodies_within_it_are_accepted(sqlite_url: str) -> None:
    nested: Any = 1
    for _ in range(4):
        nested = {"a": nested}  # body depth: 1 (body) + 1 (input) + 4 = 6
    with TestClient(create_app(make_settings(sqlite_url, max_json_depth=6))) as client:
        ok = client.post("/graphs/failing/runs", json={"input": {"a": nested}})
        too_deep = client.post("/graphs/failing/runs", json={"input": {"a": {"a": nested}}})
    assert ok.status_code == 202, ok.text
    assert too_deep.status_code == 400 and "6 levels" in too_deep.json()["detail"]


def test_numbers_and_strings_json_cannot_store_are_400(client: Any) -> None:
    for raw in (b"NaN", b"-Infinity", b"1e400", b'"\\ud800"'):
        body = b'{"input": {"x": ' + raw + b"}}"
        resp = client.post("/graphs/failing/runs", content=body, headers=JSON)
        assert resp.status_code == 400, (raw, resp.text)
    paired = b'{"input": {"x": "\\ud83d\\ude00"}}'  # a valid surrogate pair is fine
    assert client.post("/graphs/failing/runs", content=paired, headers=JSON).status_code == 202


def test_malformed_json_and_wrong_types_are_422(client: Any) -> None:
    for body in (
        b'{"input": ',
        b"not json",
        b'{"input": []}',
        b'{"input": {}, "max_concurrent": "x"}',
    ):
        resp = client.post("/graphs/failing/runs", content=body, headers=JSON)
        assert resp.status_code == 422, (body, resp.text)
    too_many = client.post("/graphs/failing/runs", json={"input": {}, "max_concurrent": 10**12})
    assert too_many.status_code == 422


def test_query_parameters_out_of_range_or_unknown_are_4xx(client: Any) -> None:
    run_id = client.post("/graphs/failing/runs", json={"input": {}}).json()["id"]
    assert client.get("/runs", params={"limit": 10**30}).status_code == 422
    assert client.get("/runs", params={"cursor": ""}).status_code == 422
    assert client.get("/runs", params={"cursor": "bm90IGEgY3Vyc29y"}).status_code == 400
    assert client.get("/runs", params={"graph": "a\x00b"}).status_code == 422
    assert client.get(f"/runs/{run_id}/events", params={"after": 2**40}).status_code == 422
    unknown = client.get("/runs", params={"limt": 5})
    assert unknown.status_code == 400 and "'limt'" in unknown.json()["detail"]


def test_unknown_and_malformed_ids_are_404_and_422(client: Any) -> None:
    missing = str(uuid.uuid4())
    for path in (f"/runs/{missing}", f"/runs/{missing}/events"):
        assert client.get(path).status_code == 404
    assert client.post(f"/runs/{missing}/cancel").status_code == 404
    for path in ("/runs/not-a-uuid", "/runs/not-a-uuid/events"):
        assert client.get(path).status_code == 422
    assert client.post("/runs/not-a-uuid/cancel").status_code == 422
    assert client.get("/graphs/no-such-graph").status_code == 404


def test_input_failing_the_graph_schema_is_422_with_the_field(client: Any) -> None:
    resp = client.post("/graphs/three_step/runs", json={"input": {"x": -1}})
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["body", "input", "x"]


def test_stream_resumed_past_the_end_of_a_finished_run_ends_at_once(client: Any) -> None:
    run_id = client.post("/graphs/failing/runs", json={"input": {}}).json()["id"]
    wait_for_status(client, run_id)
    for headers in ({"Last-Event-ID": str(10**40)}, {"Last-Event-ID": "999"}):
        resp = client.get(f"/runs/{run_id}/events", headers=headers)
        assert resp.status_code == 200 and "event:" not in resp.text


def test_active_run_cap_is_429_with_retry_after_and_spares_idempotent_retries(
    sqlite_url: str,
) -> None:
    settings = make_settings(sqlite_url, max_active_runs=1)
    with TestClient(create_app(settings)) as client:
        slow = {"input": {"delay": 0.3}}
        first = client.post("/graphs/slow_chain/runs", json=slow, headers={"Idempotency-Key": "k"})
        assert first.status_code == 202
        refused = client.post("/graphs/slow_chain/runs", json=slow)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "1"
        assert "limit of 1 " in refused.json()["detail"]
        assert "GRAPHFLOW_MAX_ACTIVE_RUNS" in refused.json()["detail"]
        retried = client.post(
            "/graphs/slow_chain/runs", json=slow, headers={"Idempotency-Key": "k"}
        )
        assert retried.status_code == 200 and retried.json()["id"] == first.json()["id"]
        client.post(f"/runs/{first.json()['id']}/cancel")
        wait_for_status(client, first.json()["id"])
        assert client.post("/graphs/failing/runs", json={"input": {}}).status_code == 202
