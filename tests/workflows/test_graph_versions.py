"""Graph versions: ``graph_fingerprint`` follows a graph's structure (nodes, edges, declared
destinations, reducers, entry point) and nothing else; an explicit ``version`` wins."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from graphflow_core import StateGraph
from service.runtime.registry import (
    RegisteredWorkflow,
    WorkflowRegistryError,
    discover,
    graph_fingerprint,
    workflow,
)
from tests.conftest import ROOT


def _node(state: dict[str, Any]) -> dict[str, Any]:
    return {}


def _other(state: dict[str, Any]) -> dict[str, Any]:
    return {"x": 1}


def _longest(current: Any, update: Any) -> Any:
    return max(current, update)


def _diamond(
    *,
    reducers: dict[str, Any] | None = None,
    nodes: tuple[str, ...] = ("a", "b", "c", "d"),
    edges: tuple[tuple[str, str], ...] = (("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")),
    entry: str = "a",
    fn: Callable[[dict[str, Any]], dict[str, Any]] = _node,
    **node_options: Any,
) -> StateGraph:
    g = StateGraph({"trace": "extend"} if reducers is None else reducers)
    for name in nodes:
        g.add_node(name, fn, **node_options)
    for src, dst in edges:
        g.add_edge(src, dst)
    return g.set_entry_point(entry)


def _fingerprint(graph: StateGraph) -> str:
    return graph_fingerprint(graph.compile())


BASE = _fingerprint(_diamond())


def test_the_fingerprint_is_twelve_hex_digits_stable_across_compiles() -> None:
    assert len(BASE) == 12 and int(BASE, 16) >= 0
    assert _fingerprint(_diamond()) == BASE
    compiled = _diamond().compile()
    assert graph_fingerprint(compiled) == graph_fingerprint(compiled)


def test_the_fingerprint_is_the_same_in_another_process_with_another_hash_seed() -> None:
    script = (
        "from tests.workflows.test_graph_versions import BASE; print(BASE)"  # computed on import
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == BASE


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(_diamond(nodes=("a", "b", "c", "d", "e")), id="a node added"),
        pytest.param(
            _diamond(
                nodes=("a", "b", "x", "d"), edges=(("a", "b"), ("a", "x"), ("b", "d"), ("x", "d"))
            ),
            id="a node renamed",
        ),
        pytest.param(
            _diamond(edges=(("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("a", "d"))),
            id="an edge added",
        ),
        pytest.param(
            _diamond(edges=(("a", "c"), ("a", "b"), ("b", "d"), ("c", "d"))),
            id="edges reordered (node run ids follow edge order)",
        ),
        pytest.param(_diamond(reducers={"trace": "merge"}), id="a reducer changed"),
        pytest.param(_diamond(reducers={"trace": _longest}), id="a callable reducer"),
        pytest.param(_diamond(reducers={}), id="a reducer dropped"),
        pytest.param(_diamond(entry="b"), id="another entry point"),
    ],
)
def test_the_fingerprint_changes_with_the_structure(changed: StateGraph) -> None:
    assert _fingerprint(changed) != BASE


def test_declared_destinations_are_part_of_the_structure() -> None:
    def graph(destinations: tuple[str, ...] | None) -> StateGraph:
        g = StateGraph()
        g.add_node("route", _node, destinations=destinations)
        g.add_node("x", _node).add_node("y", _node)
        return g.set_entry_point("route")

    undeclared, to_x, to_both = (_fingerprint(graph(d)) for d in (None, ("x",), ("x", "y")))
    assert len({undeclared, to_x, to_both}) == 3


def test_node_code_policies_and_the_order_nodes_were_added_leave_it_unchanged() -> None:
    assert _fingerprint(_diamond(fn=_other)) == BASE
    assert _fingerprint(_diamond(timeout=5.0)) == BASE
    assert _fingerprint(_diamond(nodes=("d", "c", "b", "a"))) == BASE


def test_a_registered_workflow_defaults_to_its_fingerprint() -> None:
    compiled = _diamond().compile()
    registered = RegisteredWorkflow("diamond", "", compiled)
    assert registered.version == BASE
    assert registered.on_version_change == "fail"
    assert RegisteredWorkflow("diamond", "", compiled, version="7").version == "7"


def test_discover_gives_the_explicit_version_and_the_policy() -> None:
    name = f"versioned_{uuid.uuid4().hex[:8]}"

    @workflow(name, version="7", on_version_change="resume")
    def versioned() -> StateGraph:
        return _diamond()

    @workflow(f"{name}_default")
    def fingerprinted() -> StateGraph:
        return _diamond()

    found = discover([__name__])
    assert (found[name].version, found[name].on_version_change) == ("7", "resume")
    assert (found[f"{name}_default"].version, found[f"{name}_default"].on_version_change) == (
        BASE,
        "fail",
    )


@pytest.mark.parametrize("bad", ["", " 7", "a/b", "x" * 65, "v\n1"])
def test_an_invalid_version_is_refused_naming_the_workflow(bad: str) -> None:
    with pytest.raises(WorkflowRegistryError, match="invalid version .* of workflow 'w'"):
        workflow("w", version=bad)


def test_an_unknown_version_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="must be 'fail' or 'resume'"):
        workflow("w", on_version_change="ignore")  # type: ignore[arg-type]
