"""Combining patterns: routing by batch size, map-reduce for large batches, fallback for small.

Structure::

    classifier ─┬─ large_batch_handler ─ mapper_1..3 ─ reducer ─────────────┐
                └─ small_batch_handler ─ simple_processor ─┬────────────────┴─ finalize
                                                           └─ backup_processor ┘
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from graphflow import Command, StateGraph, workflow
from workflows._common import State, node_rng

MAPPER_COUNT = 3
MAPPERS = [f"mapper_{i}" for i in range(1, MAPPER_COUNT + 1)]


class AdvancedInput(BaseModel):
    """Input of ``advanced_workflow``: the batch and the knobs of the simulated failure."""

    model_config = ConfigDict(extra="forbid")

    items: list[str] = Field(default_factory=list, description="The batch to process.")
    large_batch_threshold: int = Field(
        100, ge=0, description="Batches with more items than this are map-reduced."
    )
    failure_rate: float = Field(
        0.2, ge=0, le=1, description="Chance the simple processor fails and the backup takes over."
    )
    seed: int | None = Field(None, description="Seed for a reproducible simulated failure.")


def input_classifier(state: State) -> Command:
    """Route large batches to map-reduce and small ones to the simple processor."""
    batch_size = len(state.get("items", []))
    large = batch_size > state.get("large_batch_threshold", 100)
    return Command(
        update={"batch_size": batch_size, "metrics": {"route": "large" if large else "small"}},
        goto="large_batch_handler" if large else "small_batch_handler",
    )


def large_batch_handler(state: State) -> Command:
    """Fan the batch out to the mappers."""
    return Command(update={"metrics": {"mappers": MAPPER_COUNT}}, goto=MAPPERS)


def mapper(mapper_id: int) -> Callable[[State], dict[str, Any]]:
    """Build mapper ``mapper_id`` (1-based): it processes every third item from its offset."""
    name = f"mapper_{mapper_id}"

    def run(state: State) -> dict[str, Any]:
        chunk = list(state.get("items", []))[mapper_id - 1 :: MAPPER_COUNT]
        return {
            "processed_items": [f"{name}: {item}" for item in chunk],
            "metrics": {f"{name}_items": len(chunk)},
        }

    return run


def reducer(state: State) -> dict[str, Any]:
    """Check that the mappers covered the batch and record the reduction."""
    processed = len(state.get("processed_items", []))
    errors = []
    if processed != state.get("batch_size", processed):
        errors.append({"node": "reducer", "error": f"mapped {processed} of {state['batch_size']}"})
    return {"handled_by": "map_reduce", "metrics": {"reduced_items": processed}, "errors": errors}


def small_batch_handler(state: State) -> Command:
    """Send the batch to the simple processor."""
    return Command(goto="simple_processor")


def simple_processor(state: State) -> Command:
    """Process the batch in one go; on a (simulated) failure hand over to the backup."""
    if node_rng(state, "simple_processor").random() < state.get("failure_rate", 0.2):
        return Command(
            update={"errors": [{"node": "simple_processor", "error": "simulated failure"}]},
            goto="backup_processor",
        )
    items = state.get("items", [])
    return Command(
        update={
            "processed_items": [f"simple: {item}" for item in items],
            "metrics": {"simple_items": len(items)},
            "handled_by": "simple_processor",
        },
        goto="finalize",
    )


def backup_processor(state: State) -> dict[str, Any]:
    """Process the batch after the simple processor failed."""
    items = state.get("items", [])
    return {
        "processed_items": [f"backup: {item}" for item in items],
        "metrics": {"backup_items": len(items)},
        "handled_by": "backup_processor",
    }


def finalize(state: State) -> dict[str, Any]:
    """Join all paths: summarise what was processed, by which path, with which errors."""
    processed = state.get("processed_items", [])
    return {
        "status": "completed" if len(processed) == state.get("batch_size") else "incomplete",
        "summary": {
            "batch_size": state.get("batch_size"),
            "processed": len(processed),
            "handled_by": state.get("handled_by"),
            "errors": len(state.get("errors", [])),
        },
    }


@workflow("advanced_workflow", input_model=AdvancedInput)
def create_advanced_workflow() -> StateGraph:
    """Route a batch by size to map-reduce or to a simple processor with a backup fallback."""
    graph = StateGraph(
        state_reducers={"processed_items": "extend", "errors": "extend", "metrics": "merge"}
    )
    graph.add_node(
        "classifier", input_classifier, destinations=["large_batch_handler", "small_batch_handler"]
    )
    graph.add_node("large_batch_handler", large_batch_handler, destinations=MAPPERS)
    for mapper_id, node in enumerate(MAPPERS, start=1):
        graph.add_node(node, mapper(mapper_id))
        graph.add_edge(node, "reducer")
    graph.add_node("reducer", reducer)
    graph.add_edge("reducer", "finalize")
    graph.add_node("small_batch_handler", small_batch_handler, destinations=["simple_processor"])
    graph.add_node(
        "simple_processor", simple_processor, destinations=["finalize", "backup_processor"]
    )
    graph.add_node("backup_processor", backup_processor)
    graph.add_edge("backup_processor", "finalize")
    graph.add_node("finalize", finalize, destinations=[])
    graph.set_entry_point("classifier")
    return graph
