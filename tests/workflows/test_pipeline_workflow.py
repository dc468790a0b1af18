"""Tests of the ``pipeline`` workflow (pattern 2)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pydantic
import pytest

from service.runtime.registry import RegisteredWorkflow

RunWorkflow = Callable[..., dict[str, Any]]


def test_pipeline_feeds_combined_stage1_output_to_every_stage2_processor(
    run_workflow: RunWorkflow,
) -> None:
    state = run_workflow("pipeline", raw_input="  user   data ")

    stage1 = " + ".join(f"Stage1-{n}: Cleaned: user data" for n in "ABC")
    assert state["processed_input"] == "Cleaned: user data"
    assert state["stage1_combined"] == stage1
    assert state["final_result"] == {
        "stage1_count": 3,
        "stage2_count": 3,
        "total_steps": 8,
        "combined_output": " | ".join(f"Stage2-{n}: {stage1}" for n in "XYZ"),
    }


def test_pipeline_logs_each_step_once(run_workflow: RunWorkflow) -> None:
    state = run_workflow("pipeline", raw_input="x")

    assert sorted(state["processing_log"]) == sorted(
        ["Preprocessing completed", "Stage 1 combination completed"]
        + [f"Stage 1 {n} completed" for n in "ABC"]
        + [f"Stage 2 {n} completed" for n in "XYZ"]
    )


def test_pipeline_combiners_declare_their_fan_out_destinations(
    builtin_workflows: dict[str, RegisteredWorkflow],
) -> None:
    nodes = {node.name: node for node in builtin_workflows["pipeline"].graph.nodes}

    assert set(nodes["preprocess"].destinations) == {"stage1_a", "stage1_b", "stage1_c"}
    assert set(nodes["stage1_combine"].destinations) == {"stage2_x", "stage2_y", "stage2_z"}


@pytest.mark.parametrize("bad_input", [{}, {"raw_input": 3}, {"raw_input": "x", "other": 1}])
def test_pipeline_input_requires_a_raw_input_string_and_nothing_else(
    builtin_workflows: dict[str, RegisteredWorkflow], bad_input: dict[str, object]
) -> None:
    with pytest.raises(pydantic.ValidationError):
        builtin_workflows["pipeline"].validate_input(bad_input)
