"""Pattern 2, pipeline with parallel stages: two fan-out/fan-in stages in a row."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from graphflow import Command, StateGraph, workflow
from workflows._common import State

STAGE1 = ["stage1_a", "stage1_b", "stage1_c"]
STAGE2 = ["stage2_x", "stage2_y", "stage2_z"]


class PipelineInput(BaseModel):
    """Input of ``pipeline``: the raw text to push through both stages."""

    model_config = ConfigDict(extra="forbid")

    raw_input: str = Field(description="Raw input to clean and process.")


def preprocess(state: State) -> Command:
    """Clean the raw input, then fan out to stage 1."""
    cleaned = " ".join(str(state.get("raw_input", "")).split())
    return Command(
        update={
            "processed_input": f"Cleaned: {cleaned}",
            "processing_log": ["Preprocessing completed"],
        },
        goto=STAGE1,
    )


def stage1_processor(name: str) -> Callable[[State], dict[str, Any]]:
    """Build stage-1 processor ``name``, working on the preprocessed input."""

    def process(state: State) -> dict[str, Any]:
        return {
            "stage1_results": [f"Stage1-{name}: {state['processed_input']}"],
            "processing_log": [f"Stage 1 {name} completed"],
        }

    return process


def stage1_combiner(state: State) -> Command:
    """Join the stage-1 results (in a stable order), then fan out to stage 2."""
    return Command(
        update={
            "stage1_combined": " + ".join(sorted(state.get("stage1_results", []))),
            "processing_log": ["Stage 1 combination completed"],
        },
        goto=STAGE2,
    )


def stage2_processor(name: str) -> Callable[[State], dict[str, Any]]:
    """Build stage-2 processor ``name``, working on the combined stage-1 output."""

    def process(state: State) -> dict[str, Any]:
        return {
            "stage2_results": [f"Stage2-{name}: {state['stage1_combined']}"],
            "processing_log": [f"Stage 2 {name} completed"],
        }

    return process


def final_combiner(state: State) -> dict[str, Any]:
    """Summarise both stages into ``final_result``."""
    stage2 = sorted(state.get("stage2_results", []))
    return {
        "final_result": {
            "stage1_count": len(state.get("stage1_results", [])),
            "stage2_count": len(stage2),
            "total_steps": len(state.get("processing_log", [])),
            "combined_output": " | ".join(stage2),
        }
    }


@workflow("pipeline", input_model=PipelineInput)
def create_pipeline() -> StateGraph:
    """Preprocess input, then run two parallel stages of three processors each."""
    graph = StateGraph(
        state_reducers={
            "stage1_results": "extend",
            "stage2_results": "extend",
            "processing_log": "extend",
        }
    )
    graph.add_node("preprocess", preprocess, destinations=STAGE1)
    for node in STAGE1:
        graph.add_node(node, stage1_processor(node[-1].upper()))
        graph.add_edge(node, "stage1_combine")
    graph.add_node("stage1_combine", stage1_combiner, destinations=STAGE2)
    for node in STAGE2:
        graph.add_node(node, stage2_processor(node[-1].upper()))
        graph.add_edge(node, "final_combine")
    graph.add_node("final_combine", final_combiner, destinations=[])
    graph.set_entry_point("preprocess")
    return graph
