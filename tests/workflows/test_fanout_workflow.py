"""Tests of the ``basic_fanout`` workflow (pattern 1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pydantic
import pytest

from service.runtime.registry import RegisteredWorkflow

RunWorkflow = Callable[..., dict[str, Any]]


def test_fanout_processes_every_work_item_exactly_once(run_workflow: RunWorkflow) -> None:
    items = [f"item{i}" for i in range(6)]
    state = run_workflow("basic_fanout", work_items=items, delay_scale=0)

    processed = sorted(result.split(" ")[2] for result in state["results"])
    assert processed == items
    assert state["summary"].startswith("Processed 6 items in ")
    assert state["status"] == "completed"


def test_fanout_spreads_items_round_robin_over_the_four_processors(
    run_workflow: RunWorkflow,
) -> None:
    items = [f"item{i}" for i in range(8)]
    state = run_workflow("basic_fanout", work_items=items, delay_scale=0)

    by_processor: dict[str, list[str]] = {}
    for result in state["results"]:
        name, _, item = result.split(" ")[:3]
        by_processor.setdefault(name, []).append(item)
    assert {name: sorted(got) for name, got in by_processor.items()} == {
        "A": ["item0", "item4"],
        "B": ["item1", "item5"],
        "C": ["item2", "item6"],
        "D": ["item3", "item7"],
    }


def test_fanout_runs_its_processors_concurrently(run_workflow: RunWorkflow) -> None:
    # Nominal delays 0.3+0.5+0.2+0.4 s scaled by 0.5: 0.7 s in sequence, 0.25 s in parallel.
    state = run_workflow("basic_fanout", work_items=["x"], delay_scale=0.5)

    assert 0.25 <= state["elapsed_seconds"] < 0.6


def test_fanout_default_delays_keep_a_run_fast(run_workflow: RunWorkflow) -> None:
    state = run_workflow("basic_fanout", work_items=["a", "b"])

    assert state["elapsed_seconds"] < 0.2


def test_fanout_start_node_declares_the_processors_as_destinations(
    builtin_workflows: dict[str, RegisteredWorkflow],
) -> None:
    graph = builtin_workflows["basic_fanout"].graph
    start = next(node for node in graph.nodes if node.name == "start")

    assert set(start.destinations) == {"processor_a", "processor_b", "processor_c", "processor_d"}
    assert graph.entry_point == "start"


@pytest.mark.parametrize(
    "bad_input",
    [{"work_items": "not a list"}, {"delay_scale": -1}, {"work_items": [], "extra": 1}],
)
def test_fanout_input_rejects_malformed_input(
    builtin_workflows: dict[str, RegisteredWorkflow], bad_input: dict[str, object]
) -> None:
    with pytest.raises(pydantic.ValidationError):
        builtin_workflows["basic_fanout"].validate_input(bad_input)
