"""Runs carry metadata and tags, and ``GET /runs`` finds them by those and by creation time,
on a live server."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer

pytestmark = pytest.mark.slow


def _create(http: httpx.Client, graph: str, **body: Any) -> dict[str, Any]:
    resp = http.post(f"/graphs/{graph}/runs", json={"input": {"x": 1}, **body})
    assert resp.status_code == 202, resp.text
    run: dict[str, Any] = resp.json()
    return run


def _listed(http: httpx.Client, params: Any) -> list[str]:
    resp = http.get("/runs", params=params)
    assert resp.status_code == 200, resp.text
    return [item["id"] for item in resp.json()["items"]]


def _settled(http: httpx.Client, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        run: dict[str, Any] = http.get(f"/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            return run
        time.sleep(0.05)


def test_runs_are_found_by_tags_metadata_and_creation_time(
    database_url: str, start_server: Callable[..., LiveServer]
) -> None:
    server = start_server(database_url)
    with httpx.Client(base_url=server.url, timeout=15) as http:
        acme = _create(
            http,
            "three_step",
            tags=["prod", "eu", "prod"],
            metadata={"customer": "acme", "tier": 2, "labels": {"team": "data"}},
        )
        globex = _create(http, "three_step", tags=["prod"], metadata={"customer": "globex"})
        plain = _create(http, "failing")
        assert (acme["tags"], acme["metadata"]["tier"]) == (["prod", "eu"], 2)
        assert (plain["tags"], plain["metadata"]) == ([], {})
        waited = http.post(
            "/graphs/three_step/runs?wait=true",
            json={"input": {"x": 2}, "tags": ["waited"], "metadata": {"customer": "acme"}},
        )
        assert waited.status_code == 200, waited.text
        assert waited.json()["status"] == "succeeded"
        assert (waited.json()["tags"], waited.json()["metadata"]) == (
            ["waited"],
            {"customer": "acme"},
        )
        waited_id = waited.json()["id"]

        stored = _settled(http, acme["id"])
        assert stored["status"] == "succeeded"
        assert stored["tags"] == ["prod", "eu"]
        assert stored["metadata"] == {"customer": "acme", "tier": 2, "labels": {"team": "data"}}

        assert _listed(http, {"tag": "prod"}) == [globex["id"], acme["id"]]
        assert _listed(http, [("tag", "prod"), ("tag", "eu")]) == [acme["id"]]
        assert _listed(http, [("tag", "eu"), ("tag", "waited")]) == []
        assert _listed(http, {"metadata.customer": "acme"}) == [waited_id, acme["id"]]
        assert _listed(http, {"metadata.tier": "2"}) == [acme["id"]]  # a number, by its JSON
        assert _listed(http, {"metadata.labels": '{"team": "data"}'}) == [acme["id"]]
        assert _listed(http, {"metadata.customer": "acme", "tag": "waited"}) == [waited_id]
        assert _listed(http, {"metadata.customer": "initech"}) == []
        assert _listed(http, {"tag": "prod", "graph": "failing"}) == []

        # Creation time: strictly after / before, from the times the views give.
        assert _listed(http, {"created_after": globex["created_at"]}) == [waited_id, plain["id"]]
        window = {"created_after": acme["created_at"], "created_before": plain["created_at"]}
        assert _listed(http, window) == [globex["id"]]
        assert _listed(http, {"created_before": "2000-01-01T00:00:00Z"}) == []

        # Every view shows them: list items too, and pages keep the filter.
        page = http.get("/runs", params={"tag": "prod", "limit": 1}).json()
        assert [(i["id"], i["tags"]) for i in page["items"]] == [(globex["id"], ["prod"])]
        assert page["items"][0]["metadata"] == {"customer": "globex"}
        rest = http.get("/runs", params={"tag": "prod", "limit": 1, "cursor": page["next_cursor"]})
        assert [i["id"] for i in rest.json()["items"]] == [acme["id"]]
        assert rest.json()["next_cursor"] is None


def _detail(resp: httpx.Response) -> str:
    return str(resp.json()["detail"])


def test_tags_metadata_and_search_parameters_past_their_limits_are_refused(
    database_url: str, start_server: Callable[..., LiveServer]
) -> None:
    server = start_server(database_url)
    with httpx.Client(base_url=server.url, timeout=15) as http:

        def create(**body: Any) -> httpx.Response:
            return http.post("/graphs/three_step/runs", json={"input": {"x": 1}, **body})

        too_many = create(tags=[f"t{i}" for i in range(21)])
        assert too_many.status_code == 422 and "at most 20 items" in _detail(too_many)
        assert create(tags=[f"t{i}" for i in range(20)]).status_code == 202
        too_long = create(tags=["x" * 65])
        assert too_long.status_code == 422 and "at most 64 characters" in _detail(too_long)
        assert create(tags=["x" * 64]).status_code == 202
        assert create(tags=["bad\ntag"]).status_code == 422
        assert create(tags=[""]).status_code == 422
        big = create(metadata={"blob": "x" * 8200})
        assert big.status_code == 422 and "8192 bytes (8 KiB)" in _detail(big)
        assert create(metadata={"blob": "x" * 8000}).status_code == 202
        assert create(metadata={"": 1}).status_code == 422
        assert create(metadata={"k" * 257: 1}).status_code == 422

        def listed(params: Any) -> httpx.Response:
            return http.get("/runs", params=params)

        naive = listed({"created_after": "2026-01-01T00:00:00"})
        assert naive.status_code == 422 and "time zone" in _detail(naive)
        assert listed({"tag": "x" * 65}).status_code == 422
        assert listed([("tag", f"t{i}") for i in range(21)]).status_code == 422
        empty_key = listed({"metadata.": "x"})
        assert empty_key.status_code == 400 and "name a metadata key" in _detail(empty_key)
        twice = listed([("metadata.k", "a"), ("metadata.k", "b")])
        assert twice.status_code == 400 and "more than once" in _detail(twice)
        unknown = listed({"metadata": "x"})
        assert unknown.status_code == 400 and "'metadata.<key>'" in _detail(unknown)
        # A value no search row can hold finds nothing, and is no error on either database.
        assert listed({"metadata.k": "a\x00b"}).json()["items"] == []
    assert "Traceback" not in server.log()
