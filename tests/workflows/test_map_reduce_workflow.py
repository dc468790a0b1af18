"""Tests of the ``map_reduce`` workflow (pattern 4)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pydantic
import pytest

from service.runtime.registry import RegisteredWorkflow

RunWorkflow = Callable[..., dict[str, Any]]


def test_map_reduce_maps_a_small_collection_in_the_single_mapper(
    visited_nodes: RunWorkflow,
) -> None:
    run = visited_nodes("map_reduce", items=["a", "b"])

    assert run["nodes"] == ["map_phase", "single_mapper", "reduce_phase"]
    assert run["state"]["final_result"] == {
        "strategy": "sequential",
        "total_processed": 2,
        "results": ["Processed: a", "Processed: b"],
        "stats": {"mode": "sequential", "items": 2},
    }


def test_map_reduce_splits_a_large_collection_over_four_parallel_mappers(
    visited_nodes: RunWorkflow,
) -> None:
    items = [f"item_{i}" for i in range(20)]
    run = visited_nodes("map_reduce", items=items)

    assert sorted(run["nodes"]) == sorted(
        ["map_phase", "mapper_1", "mapper_2", "mapper_3", "mapper_4", "reduce_phase"]
    )
    final = run["state"]["final_result"]
    assert final["strategy"] == "parallel"
    assert final["total_processed"] == 20
    assert final["stats"] == {f"mapper_{i}_items": 5 for i in range(1, 5)}
    assert final["results"][:6] == [f"Mapper1 processed: item_{i}" for i in range(5)] + [
        "Mapper2 processed: item_5"
    ]


@pytest.mark.parametrize("count", [4, 5, 7, 21])
def test_map_reduce_processes_every_item_when_the_count_is_not_a_multiple_of_four(
    run_workflow: RunWorkflow, count: int
) -> None:
    items = [f"i{n}" for n in range(count)]
    final = run_workflow("map_reduce", items=items)["final_result"]

    assert final["total_processed"] == count
    assert [result.split(": ")[1] for result in final["results"]] == items
    assert sum(final["stats"].values()) == count


def test_map_reduce_threshold_decides_the_strategy(run_workflow: RunWorkflow) -> None:
    items = ["a", "b", "c", "d", "e"]

    assert run_workflow("map_reduce", items=items)["final_result"]["strategy"] == "parallel"
    state = run_workflow("map_reduce", items=items, parallel_threshold=10)
    assert state["final_result"]["strategy"] == "sequential"


@pytest.mark.parametrize(
    "bad_input", [{"items": "abc"}, {"parallel_threshold": -1}, {"items": [], "chunks": 2}]
)
def test_map_reduce_input_rejects_malformed_input(
    builtin_workflows: dict[str, RegisteredWorkflow], bad_input: dict[str, object]
) -> None:
    with pytest.raises(pydantic.ValidationError):
        builtin_workflows["map_reduce"].validate_input(bad_input)
