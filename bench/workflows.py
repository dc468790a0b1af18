"""Graphs only the service benchmark runs, loaded with ``GRAPHFLOW_WORKFLOWS=bench.workflows``.

``bench/service_bench.py`` and ``bench/scaleout.py`` start their processes with this module on
the workflow path. The imports are the long-standing ones (``graphflow_core`` and
``service.registry``), so the same module also loads into a server run from an older checkout
(``service_bench.py --repo PATH``).
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from graphflow_core import Command, Send, StateGraph
from service.registry import workflow

WIDE_MAP = "bench_wide_map"
SSE_CHAIN = "bench_sse_chain"
SLEEP_CHAIN = "bench_sleep_chain"


class WideMapInput(BaseModel):
    """Input of ``bench_wide_map``: how many ``work`` nodes the start node sends."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(2000, ge=1, le=100_000, description="Width of the map.")


def _start(state: Any) -> Command:
    return Command(goto=[Send("work", i) for i in range(int(state.get("n", 2000)))])


def _work(item: Any) -> dict[str, Any]:
    return {"done": [item]}


def _join(state: Any) -> dict[str, Any]:
    return {"count": len(state.get("done", []))}


@workflow(WIDE_MAP, input_model=WideMapInput)
def wide_map() -> StateGraph:
    """start sends ``n`` items to ``work`` (one node run each), which all flow into ``join``."""
    graph = StateGraph(state_reducers={"done": "extend"})
    graph.add_node("start", _start, destinations=["work"])
    graph.add_node("work", _work)
    graph.add_node("join", _join)
    graph.add_edge("work", "join")
    graph.set_entry_point("start")
    return graph


class SseChainInput(BaseModel):
    """Input of ``bench_sse_chain``: how long each node sleeps."""

    model_config = ConfigDict(extra="forbid")

    delay: float = Field(0.05, ge=0, le=5, description="Seconds each node sleeps.")


def _sleeper(name: str) -> Any:
    def node(state: Any) -> dict[str, Any]:
        time.sleep(float(state.get("delay", 0.05)))
        return {"trace": [name]}

    node.__name__ = name
    return node


@workflow(SSE_CHAIN, input_model=SseChainInput)
def sse_chain() -> StateGraph:
    """a -> b -> c, each sleeping ``delay`` seconds, so a stream is open before they complete."""
    graph = StateGraph(state_reducers={"trace": "extend"})
    graph.add_node("a", _sleeper("a")).add_node("b", _sleeper("b")).add_node("c", _sleeper("c"))
    graph.add_edge("a", "b").add_edge("b", "c").set_entry_point("a")
    return graph


class SleepChainInput(BaseModel):
    """Input of ``bench_sleep_chain``: how long each node sleeps."""

    model_config = ConfigDict(extra="forbid")

    delay: float = Field(0.05, ge=0, le=5, description="Seconds each node sleeps.")


@workflow(SLEEP_CHAIN, input_model=SleepChainInput)
def sleep_chain() -> StateGraph:
    """s1 -> s2 -> s3 -> s4, each sleeping ``delay`` seconds: a run holds its slot for about
    ``4 * delay`` while costing little CPU, so runs/s is bound by run slots (``scaleout.py``)."""
    graph = StateGraph(state_reducers={"trace": "extend"})
    for name in ("s1", "s2", "s3", "s4"):
        graph.add_node(name, _sleeper(name))
    graph.add_edge("s1", "s2").add_edge("s2", "s3").add_edge("s3", "s4").set_entry_point("s1")
    return graph
