"""Pattern 1, basic fan-out/fan-in: ``start`` → four parallel processors → ``combiner``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from graphflow import Command, StateGraph, workflow
from workflows._common import State, simulate_work

# Processor name → nominal delay in seconds (the guide's values), scaled by ``delay_scale``.
PROCESSORS: dict[str, float] = {"A": 0.3, "B": 0.5, "C": 0.2, "D": 0.4}
PROCESSOR_NODES = [f"processor_{name.lower()}" for name in PROCESSORS]


class FanoutInput(BaseModel):
    """Input of ``basic_fanout``: the items to spread over the four processors."""

    model_config = ConfigDict(extra="forbid")

    work_items: list[str] = Field(default_factory=list, description="Items to process.")
    delay_scale: float = Field(
        0.01, ge=0, le=10, description="Multiplier of each processor's nominal delay (0.2–0.5 s)."
    )


def distribute_work(state: State) -> Command:
    """Fan out to all processors and record the start time."""
    return Command(update={"status": "processing", "started_at": time.time()}, goto=PROCESSOR_NODES)


def processor(index: int, name: str, delay: float) -> Callable[[State], dict[str, Any]]:
    """Build processor ``name``: it handles every fourth work item, starting at ``index``."""

    def process(state: State) -> dict[str, Any]:
        seconds = delay * state.get("delay_scale", 0.01)
        simulate_work(seconds)
        items = list(state.get("work_items", []))[index :: len(PROCESSORS)]
        return {"results": [f"{name} processed {item} in {seconds:.3f}s" for item in items]}

    process.__name__ = f"processor_{name.lower()}"
    return process


def combine_results(state: State) -> dict[str, Any]:
    """Fan in: summarise the processors' results once all of them have finished."""
    results = state.get("results", [])
    elapsed = time.time() - state.get("started_at", time.time())
    return {
        "summary": f"Processed {len(results)} items in {elapsed:.2f}s",
        "elapsed_seconds": round(elapsed, 3),
        "status": "completed",
    }


@workflow("basic_fanout", input_model=FanoutInput)
def create_basic_fanout() -> StateGraph:
    """Fan work items out to four parallel processors and combine their results."""
    graph = StateGraph(state_reducers={"results": "extend"})
    graph.add_node("start", distribute_work, destinations=PROCESSOR_NODES)
    for index, (name, delay) in enumerate(PROCESSORS.items()):
        node = PROCESSOR_NODES[index]
        graph.add_node(node, processor(index, name, delay))
        graph.add_edge(node, "combiner")
    graph.add_node("combiner", combine_results, destinations=[])
    graph.set_entry_point("start")
    return graph
