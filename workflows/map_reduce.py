"""Pattern 4, map-reduce: small collections run in one mapper, large ones in four parallel ones."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from graphflow import Command, StateGraph, workflow
from workflows._common import State

MAPPER_COUNT = 4
MAPPERS = [f"mapper_{i}" for i in range(1, MAPPER_COUNT + 1)]


class MapReduceInput(BaseModel):
    """Input of ``map_reduce``: the items, and the size above which mapping goes parallel."""

    model_config = ConfigDict(extra="forbid")

    items: list[str] = Field(default_factory=list, description="Items to map.")
    parallel_threshold: int = Field(
        3, ge=0, description="Collections of at most this many items are mapped sequentially."
    )


def map_phase(state: State) -> Command:
    """Pick the sequential mapper or split the items into chunks for the parallel mappers."""
    items = state.get("items", [])
    if len(items) <= state.get("parallel_threshold", 3):
        return Command(update={"map_strategy": "sequential"}, goto="single_mapper")
    # Ceiling division: the chunks cover every item (the last ones may be short or empty).
    chunk_size = max(1, math.ceil(len(items) / MAPPER_COUNT))
    return Command(
        update={"map_strategy": "parallel", "chunk_size": chunk_size, "total_items": len(items)},
        goto=MAPPERS,
    )


def single_mapper(state: State) -> dict[str, Any]:
    """Map all items in one node."""
    items = state.get("items", [])
    return {
        "mapped_results": [
            {"index": i, "result": f"Processed: {item}"} for i, item in enumerate(items)
        ],
        "processing_stats": {"mode": "sequential", "items": len(items)},
    }


def parallel_mapper(mapper_id: int) -> Callable[[State], dict[str, Any]]:
    """Build mapper ``mapper_id`` (1-based), which maps its own chunk of the items."""

    def mapper(state: State) -> dict[str, Any]:
        items = state.get("items", [])
        chunk_size = state.get("chunk_size", 1)
        start = (mapper_id - 1) * chunk_size
        chunk = items[start : start + chunk_size]
        return {
            "mapped_results": [
                {"index": start + offset, "result": f"Mapper{mapper_id} processed: {item}"}
                for offset, item in enumerate(chunk)
            ],
            "processing_stats": {f"mapper_{mapper_id}_items": len(chunk)},
        }

    return mapper


def reduce_phase(state: State) -> dict[str, Any]:
    """Combine the mapped results, in input order, into ``final_result``."""
    mapped = sorted(state.get("mapped_results", []), key=lambda entry: entry["index"])
    return {
        "final_result": {
            "strategy": state.get("map_strategy", "unknown"),
            "total_processed": len(mapped),
            "results": [entry["result"] for entry in mapped],
            "stats": dict(state.get("processing_stats", {})),
        }
    }


@workflow("map_reduce", input_model=MapReduceInput)
def create_map_reduce() -> StateGraph:
    """Map items sequentially or over four parallel mappers by size, then reduce."""
    graph = StateGraph(state_reducers={"mapped_results": "extend", "processing_stats": "merge"})
    graph.add_node("map_phase", map_phase, destinations=["single_mapper", *MAPPERS])
    graph.add_node("single_mapper", single_mapper)
    graph.add_edge("single_mapper", "reduce_phase")
    for mapper_id, node in enumerate(MAPPERS, start=1):
        graph.add_node(node, parallel_mapper(mapper_id))
        graph.add_edge(node, "reduce_phase")
    graph.add_node("reduce_phase", reduce_phase, destinations=[])
    graph.set_entry_point("map_phase")
    return graph
