"""LangGraph as an oracle: each loop shape, written for both engines, ends in the same state.

LangGraph is in the ``bench`` extra; CI installs it. Without it these tests skip.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

import pytest

from graphflow import Command, Send, StateGraph

langgraph = pytest.importorskip(
    "langgraph.graph", reason="LangGraph is not installed: pip install -e '.[bench]'"
)
lg_types = pytest.importorskip("langgraph.types")
END, START = langgraph.END, langgraph.START
LGCommand, LGSend = lg_types.Command, lg_types.Send


class State(TypedDict, total=False):
    turn: int
    round: int
    count: int
    outer: int
    inner: int
    results: Annotated[list[Any], operator.add]
    log: Annotated[list[Any], operator.add]
    joined: list[Any]


def _both(build: Callable[[Any, Any, Any, Any], dict[str, Any]]) -> tuple[Any, Any]:
    """Run ``build(engine, command, send, end)`` for GraphFlow and for LangGraph."""
    ours = build("graphflow", Command, Send, [])
    theirs = build("langgraph", LGCommand, LGSend, END)
    return ours, theirs


def _graph(engine: str) -> Any:
    if engine == "graphflow":
        return StateGraph(state_reducers={"results": "extend", "log": "extend"})
    return langgraph.StateGraph(State)


def _run(engine: str, graph: Any, entry: str) -> dict[str, Any]:
    if engine == "graphflow":
        return dict(graph.set_entry_point(entry).compile().invoke({}))
    graph.add_edge(START, entry)
    out = graph.compile().invoke({}, {"recursion_limit": 10_000})
    # LangGraph shows a reducer channel nobody wrote as an empty list; GraphFlow omits it.
    return {key: value for key, value in out.items() if value != []}


def _node(engine: str, graph: Any, name: str, fn: Any, destinations: list[str] | None) -> None:
    if engine == "graphflow":
        graph.add_node(name, fn, destinations=destinations)
    else:
        graph.add_node(name, fn)


def _join_edge(engine: str, graph: Any, sources: list[str], target: str) -> None:
    """An inclusive join: GraphFlow's edges, or LangGraph's edge that waits for all sources."""
    if engine == "graphflow":
        for source in sources:
            graph.add_edge(source, target)
    else:
        graph.add_edge(sources, target)


def test_agent_loop_with_three_tools_matches_langgraph():
    def build(engine: str, command: Any, send: Any, end: Any) -> dict[str, Any]:
        def model(state: dict[str, Any]) -> Any:
            turn = state.get("turn", 0)
            if turn == 4:
                return command(goto=end)
            return command(update={"turn": turn + 1}, goto=["a", "b", "c"])

        graph = _graph(engine)
        _node(engine, graph, "model", model, ["a", "b", "c"])
        for name in "abc":
            graph.add_node(name, lambda s, name=name: {"results": [name]})
            graph.add_edge(name, "model")
        return _run(engine, graph, "model")

    ours, theirs = _both(build)
    assert ours == theirs
    assert ours["results"] == ["a", "b", "c"] * 4


def test_head_left_right_join_loop_matches_langgraph():
    def build(engine: str, command: Any, send: Any, end: Any) -> dict[str, Any]:
        def join(state: dict[str, Any]) -> Any:
            return command(goto="head" if state["round"] < 5 else end)

        graph = _graph(engine)
        graph.add_node("head", lambda s: {"round": s.get("round", 0) + 1})
        graph.add_edge("head", "l").add_edge("head", "r")
        graph.add_node("l", lambda s: {"log": [f"l{s['round']}"]})
        graph.add_node("r", lambda s: time.sleep(0.002) or {"log": [f"r{s['round']}"]})
        _node(engine, graph, "join", join, ["head"])
        _join_edge(engine, graph, ["l", "r"], "join")
        return _run(engine, graph, "head")

    ours, theirs = _both(build)
    assert ours == theirs


def test_agent_loop_with_send_tools_matches_langgraph():
    def build(engine: str, command: Any, send: Any, end: Any) -> dict[str, Any]:
        def model(state: dict[str, Any]) -> Any:
            turn = state.get("turn", 0)
            if turn == 3:
                return command(goto=end)
            calls = [send("tool", {"turn": turn, "arg": i}) for i in range(3)]
            return command(update={"turn": turn + 1}, goto=calls)

        graph = _graph(engine)
        _node(engine, graph, "model", model, ["tool"])
        graph.add_node("tool", lambda c: {"results": [f"t{c['turn']}.{c['arg']}"]})
        graph.add_edge("tool", "model")
        return _run(engine, graph, "model")

    ours, theirs = _both(build)
    assert ours == theirs
    assert len(ours["results"]) == 9


def test_loop_inside_one_branch_joined_with_the_other_branch_matches_langgraph():
    def build(engine: str, command: Any, send: Any, end: Any) -> dict[str, Any]:
        def refine(state: dict[str, Any]) -> Any:
            count = state.get("count", 0) + 1
            return command(update={"count": count}, goto="refine" if count < 4 else "done")

        graph = _graph(engine)
        graph.add_node("start", lambda s: {})
        graph.add_edge("start", "refine").add_edge("start", "side")
        _node(engine, graph, "refine", refine, ["refine", "done"])
        graph.add_node("done", lambda s: {"log": [f"done{s['count']}"]})
        graph.add_node("side", lambda s: {"log": ["side"]})
        graph.add_node("join", lambda s: {"joined": sorted(s["log"])})
        _join_edge(engine, graph, ["done", "side"], "join")
        return _run(engine, graph, "start")

    ours, theirs = _both(build)
    # The merge order of parallel branches is each engine's own (GraphFlow's is by causal
    # key, LangGraph's by superstep), so compare the list as a multiset.
    assert sorted(ours.pop("log")) == sorted(theirs.pop("log"))
    assert ours == theirs


def test_nested_fan_out_loops_match_langgraph():
    def build(engine: str, command: Any, send: Any, end: Any) -> dict[str, Any]:
        def inner(state: dict[str, Any]) -> Any:
            return command(update={"inner": state["inner"] + 1}, goto=["x", "y"])

        def inner_join(state: dict[str, Any]) -> Any:
            return command(goto="inner" if state["inner"] < 3 else "outer_join")

        def outer_join(state: dict[str, Any]) -> Any:
            return command(goto="outer" if state["outer"] < 3 else end)

        graph = _graph(engine)
        graph.add_node("outer", lambda s: {"outer": s.get("outer", 0) + 1, "inner": 0})
        graph.add_edge("outer", "inner")
        _node(engine, graph, "inner", inner, ["x", "y"])
        graph.add_node("x", lambda s: {"log": [f"x{s['outer']}.{s['inner']}"]})
        graph.add_node("y", lambda s: {"log": [f"y{s['outer']}.{s['inner']}"]})
        graph.add_edge("x", "inner_join").add_edge("y", "inner_join")
        _node(engine, graph, "inner_join", inner_join, ["inner", "outer_join"])
        _node(engine, graph, "outer_join", outer_join, ["outer"])
        return _run(engine, graph, "outer")

    ours, theirs = _both(build)
    assert ours == theirs
    assert len(ours["log"]) == 18


def test_undeclared_goto_back_upstream_matches_langgraph():
    def build(engine: str, command: Any, send: Any, end: Any) -> dict[str, Any]:
        def head(state: dict[str, Any]) -> Any:
            return command(update={"round": state.get("round", 0) + 1}, goto=["l", "r"])

        def again(state: dict[str, Any]) -> Any:
            return command(goto="head" if state["round"] < 4 else end)

        graph = _graph(engine)
        _node(engine, graph, "head", head, ["l", "r"])
        graph.add_node("l", lambda s: {"log": [f"l{s['round']}"]})
        graph.add_node("r", lambda s: {"log": [f"r{s['round']}"]})
        graph.add_node("join", lambda s: {"joined": list(s["log"])})
        graph.add_edge("l", "join").add_edge("r", "join").add_edge("join", "again")
        graph.add_node("again", again)
        return _run(engine, graph, "head")

    ours, theirs = _both(build)
    assert ours == theirs
