"""Graph listing and description."""

from __future__ import annotations

from typing import Any


def test_list_graphs_includes_builtin_and_configured_workflows(client: Any) -> None:
    graphs = {g["name"]: g for g in client.get("/graphs").json()}
    assert {"three_step", "failing", "pipeline"} <= set(graphs)
    assert graphs["three_step"]["description"] == "a -> b -> c, each multiplies x."
    assert graphs["three_step"]["node_count"] == 3
    assert graphs["three_step"]["version"] == client.get("/graphs/three_step").json()["version"]


def test_get_graph_describes_nodes_edges_reducers_schema_and_mermaid(client: Any) -> None:
    detail = client.get("/graphs/three_step").json()
    assert set(detail) == {
        "name",
        "description",
        "version",
        "on_version_change",
        "nodes",
        "edges",
        "entry_point",
        "reducers",
        "input_schema",
        "mermaid",
    }
    assert [n["name"] for n in detail["nodes"]] == ["a", "b", "c"]
    assert {"source": "a", "target": "b"} in detail["edges"]
    assert detail["entry_point"] == "a"
    assert detail["reducers"]["trace"] == "extend"
    assert detail["input_schema"]["properties"]["x"]["type"] == "integer"
    assert "a" in detail["mermaid"] and "b" in detail["mermaid"]
    assert len(detail["version"]) == 12 and detail["on_version_change"] == "fail"
    assert client.get("/graphs/failing").json()["input_schema"] is None


def test_unknown_graph_is_404(client: Any) -> None:
    resp = client.get("/graphs/missing")
    assert resp.status_code == 404 and resp.json() == {"detail": "graph 'missing' not found"}


def test_openapi_has_explicit_operation_ids(client: Any) -> None:
    spec = client.get("/openapi.json").json()
    ops = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
    assert {
        "list_graphs",
        "get_graph",
        "create_run",
        "get_run",
        "list_runs",
        "stream_run_events",
        "cancel_run",
        "healthz",
        "readyz",
    } <= ops
