"""Small graphs the service tests run (registered via ``GRAPHFLOW_WORKFLOWS``)."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field

from graphflow_core import StateGraph
from service.runtime.registry import workflow


class ThreeStepInput(BaseModel):
    x: int = Field(ge=0)
    delay: float = Field(0.0, ge=0, le=5)


def _step(name: str, factor: int) -> Any:
    def node(state: dict[str, Any]) -> dict[str, Any]:
        time.sleep(float(state.get("delay") or 0))
        return {"x": state["x"] * factor, "trace": [name]}

    node.__name__ = name
    return node


@workflow("three_step", description="a -> b -> c, each multiplies x.", input_model=ThreeStepInput)
def three_step() -> StateGraph:
    g = StateGraph({"trace": "extend"})
    g.add_node("a", _step("a", 2)).add_node("b", _step("b", 3)).add_node("c", _step("c", 5))
    g.add_edge("a", "b").add_edge("b", "c").set_entry_point("a")
    return g


def _boom(state: dict[str, Any]) -> dict[str, Any]:
    raise ValueError("boom: the node failed on purpose")


@workflow("failing", description="a -> boom, which raises ValueError.")
def failing() -> StateGraph:
    g = StateGraph({"trace": "extend"})
    g.add_node("a", _step("a", 1)).add_node("boom", _boom)
    g.add_edge("a", "boom").set_entry_point("a")
    return g


def _slow(name: str) -> Any:
    def node(state: dict[str, Any]) -> dict[str, Any]:
        time.sleep(float(state.get("delay", 0.2)))
        return {"trace": [name]}

    return node


@workflow("slow_chain", description="Eight nodes in a chain, each sleeping `delay` seconds.")
def slow_chain() -> StateGraph:
    g = StateGraph({"trace": "extend"})
    names = [f"s{i}" for i in range(8)]
    for name in names:
        g.add_node(name, _slow(name))
    for src, dst in zip(names, names[1:], strict=False):
        g.add_edge(src, dst)
    g.set_entry_point(names[0])
    return g


def _unstorable(state: dict[str, Any]) -> dict[str, Any]:
    return {"thing": object()}


@workflow("unstorable", description="A node whose update cannot be stored as JSON.")
def unstorable() -> StateGraph:
    g = StateGraph()
    g.add_node("bad", _unstorable).set_entry_point("bad")
    return g


@workflow("unstorable_node_name", description="A node whose name Postgres cannot store (NUL).")
def unstorable_node_name() -> StateGraph:
    g = StateGraph()
    g.add_node("bad\x00name", _step("bad", 1)).set_entry_point("bad\x00name")
    return g
