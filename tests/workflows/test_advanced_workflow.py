"""Tests of ``advanced_workflow``: routing + map-reduce + fallback combined."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pydantic
import pytest

from service.runtime.registry import RegisteredWorkflow

RunWorkflow = Callable[..., dict[str, Any]]


def test_advanced_map_reduces_a_large_batch_over_three_mappers(
    visited_nodes: RunWorkflow,
) -> None:
    items = [f"item{i}" for i in range(150)]
    run = visited_nodes("advanced_workflow", items=items)

    assert sorted(run["nodes"]) == sorted(
        ["classifier", "large_batch_handler", "mapper_1", "mapper_2", "mapper_3"]
        + ["reducer", "finalize"]
    )
    state = run["state"]
    assert state["status"] == "completed"
    assert state["summary"] == {
        "batch_size": 150,
        "processed": 150,
        "handled_by": "map_reduce",
        "errors": 0,
    }
    assert sorted(item.split(": ")[1] for item in state["processed_items"]) == sorted(items)
    assert state["metrics"] == {
        "route": "large",
        "mappers": 3,
        "mapper_1_items": 50,
        "mapper_2_items": 50,
        "mapper_3_items": 50,
        "reduced_items": 150,
    }


def test_advanced_processes_a_small_batch_in_the_simple_processor(
    visited_nodes: RunWorkflow,
) -> None:
    run = visited_nodes("advanced_workflow", items=["a", "b"], failure_rate=0)

    assert run["nodes"] == ["classifier", "small_batch_handler", "simple_processor", "finalize"]
    state = run["state"]
    assert state["processed_items"] == ["simple: a", "simple: b"]
    assert state.get("errors", []) == []
    assert state["summary"]["handled_by"] == "simple_processor"
    assert state["status"] == "completed"


def test_advanced_falls_back_to_the_backup_when_the_simple_processor_fails(
    visited_nodes: RunWorkflow,
) -> None:
    run = visited_nodes("advanced_workflow", items=["a", "b"], failure_rate=1)

    assert run["nodes"] == [
        "classifier",
        "small_batch_handler",
        "simple_processor",
        "backup_processor",
        "finalize",
    ]
    state = run["state"]
    assert state["processed_items"] == ["backup: a", "backup: b"]
    assert state["errors"] == [{"node": "simple_processor", "error": "simulated failure"}]
    assert state["summary"] == {
        "batch_size": 2,
        "processed": 2,
        "handled_by": "backup_processor",
        "errors": 1,
    }
    assert state["metrics"] == {"route": "small", "backup_items": 2}


def test_advanced_threshold_decides_which_batches_are_large(run_workflow: RunWorkflow) -> None:
    items = ["a", "b", "c", "d"]

    large = run_workflow("advanced_workflow", items=items, large_batch_threshold=3)
    small = run_workflow("advanced_workflow", items=items, large_batch_threshold=4, failure_rate=0)

    assert large["summary"]["handled_by"] == "map_reduce"
    assert small["summary"]["handled_by"] == "simple_processor"


def test_advanced_simulated_failure_is_reproducible_with_a_seed(run_workflow: RunWorkflow) -> None:
    def handler(seed: int) -> str:
        state = run_workflow("advanced_workflow", items=["a"], failure_rate=0.5, seed=seed)
        return str(state["summary"]["handled_by"])

    first = [handler(seed) for seed in range(12)]

    assert [handler(seed) for seed in range(12)] == first
    assert set(first) == {"simple_processor", "backup_processor"}


def test_advanced_dynamic_routes_are_declared_for_the_diagram(
    builtin_workflows: dict[str, RegisteredWorkflow],
) -> None:
    graph = builtin_workflows["advanced_workflow"].graph
    destinations = {node.name: set(node.destinations or ()) for node in graph.nodes}

    assert destinations["classifier"] == {"large_batch_handler", "small_batch_handler"}
    assert destinations["large_batch_handler"] == {"mapper_1", "mapper_2", "mapper_3"}
    assert destinations["simple_processor"] == {"finalize", "backup_processor"}
    assert graph.reducers == {"processed_items": "extend", "errors": "extend", "metrics": "merge"}
    assert "simple_processor -.-> backup_processor" in graph.to_mermaid()


@pytest.mark.parametrize(
    "bad_input",
    [
        {"items": [1, 2]},
        {"failure_rate": 2},
        {"large_batch_threshold": -5},
        {"batch_size": 10},
    ],
)
def test_advanced_input_rejects_malformed_input(
    builtin_workflows: dict[str, RegisteredWorkflow], bad_input: dict[str, object]
) -> None:
    with pytest.raises(pydantic.ValidationError):
        builtin_workflows["advanced_workflow"].validate_input(bad_input)
