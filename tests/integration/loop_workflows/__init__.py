"""A user package of loop graphs, registered through ``GRAPHFLOW_WORKFLOWS`` as users do."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from graphflow import Command, StateGraph, workflow


class AgentLoopInput(BaseModel):
    turns: int = Field(ge=0, le=1000)


@workflow(
    "agent_loop",
    description="A model that calls two tools in parallel every turn, for `turns` turns.",
    input_model=AgentLoopInput,
)
def agent_loop() -> StateGraph:
    def model(state: dict[str, Any]) -> Command:
        turn = state.get("turn", 0)
        seen = len(state.get("results", []))
        update = {"seen": [seen]}
        if turn == state["turns"]:
            return Command(update=update, goto=[])
        return Command(update={**update, "turn": turn + 1}, goto=["search", "fetch"])

    graph = StateGraph(state_reducers={"results": "extend", "seen": "extend"})
    graph.add_node("model", model, destinations=["search", "fetch"])
    graph.add_node("search", lambda s: {"results": [f"search{s['turn']}"]})
    graph.add_node("fetch", lambda s: {"results": [f"fetch{s['turn']}"]})
    graph.add_edge("search", "model").add_edge("fetch", "model")
    return graph.set_entry_point("model")
