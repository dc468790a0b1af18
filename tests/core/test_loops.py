"""Loops whose body fans out: every wave joins on its own, as agent loops need."""

from __future__ import annotations

import gc
import threading
import time
import tracemalloc
from typing import Any

import pytest

from graphflow import Command, NodeRecord, Send, StateGraph


def agent_loop(turns: int, tools: str = "abc", seen: list[int] | None = None) -> StateGraph:
    """A model that calls every tool in parallel, then sees their results on its next turn."""

    def model(state: dict[str, Any]) -> Command:
        if seen is not None:
            seen.append(len(state.get("results", [])))
        turn = state.get("turn", 0)
        if turn == turns:
            return Command(goto=[])
        return Command(update={"turn": turn + 1}, goto=list(tools))

    graph = StateGraph(state_reducers={"results": "extend"})
    graph.add_node("model", model, destinations=list(tools))
    for name in tools:
        graph.add_node(name, lambda s, name=name: {"results": [name]})
        graph.add_edge(name, "model")
    return graph.set_entry_point("model")


def test_agent_loop_model_sees_every_tool_result_of_each_turn():
    seen: list[int] = []
    out = agent_loop(4, seen=seen).compile().invoke({})
    assert seen == [0, 3, 6, 9, 12]
    assert out["results"] == ["a", "b", "c"] * 4


def test_agent_loop_joins_each_turn_when_tools_finish_in_any_order():
    delays = {"a": 0.03, "b": 0.0, "c": 0.015}

    def tool(name: str):
        def run(state: dict[str, Any]) -> dict[str, Any]:
            time.sleep(delays[name])
            return {"results": [name]}

        return run

    seen: list[int] = []

    def model(state: dict[str, Any]) -> Command:
        seen.append(len(state.get("results", [])))
        turn = state.get("turn", 0)
        return (
            Command(goto=[]) if turn == 3 else Command(update={"turn": turn + 1}, goto=list("abc"))
        )

    graph = StateGraph(state_reducers={"results": "extend"})
    graph.add_node("model", model, destinations=["a", "b", "c"])
    for name in "abc":
        graph.add_node(name, tool(name)).add_edge(name, "model")
    out = graph.set_entry_point("model").compile().invoke({})
    assert seen == [0, 3, 6, 9]
    assert out["results"] == ["a", "b", "c"] * 3


def test_head_left_right_join_loop_joins_both_sides_every_round():
    calls: list[tuple[str, int]] = []
    lock = threading.Lock()

    def head(state: dict[str, Any]) -> dict[str, Any]:
        return {"round": state.get("round", 0) + 1}

    def side(name: str, delay: float):
        def run(state: dict[str, Any]) -> dict[str, Any]:
            time.sleep(delay)
            with lock:
                calls.append((name, state["round"]))
            return {"log": [f"{name}{state['round']}"]}

        return run

    def join(state: dict[str, Any]) -> Command:
        with lock:
            calls.append(("join", state["round"]))
        return Command(goto="head" if state["round"] < 4 else [])

    graph = StateGraph(state_reducers={"log": "extend"})
    graph.add_node("head", head).add_edge("head", "l").add_edge("head", "r")
    graph.add_node("l", side("l", 0.0)).add_node("r", side("r", 0.02))
    graph.add_node("join", join, destinations=["head"])
    graph.add_edge("l", "join").add_edge("r", "join")
    out = graph.set_entry_point("head").compile().invoke({})
    assert out["log"] == [f"{s}{n}" for n in range(1, 5) for s in "lr"]
    joins = [n for name, n in calls if name == "join"]
    assert joins == [1, 2, 3, 4]
    for n in range(1, 5):
        # each round's join runs after both of that round's sides, never before r
        assert calls.index(("join", n)) > calls.index(("r", n))
        assert calls.index(("join", n)) > calls.index(("l", n))


def test_agent_loop_with_send_tools_runs_a_turns_calls_in_parallel_and_joins_them():
    running = 0
    peak = 0
    lock = threading.Lock()
    seen: list[list[str]] = []

    def model(state: dict[str, Any]) -> Command:
        seen.append(sorted(state.get("results", [])))
        turn = state.get("turn", 0)
        if turn == 3:
            return Command(goto=[])
        calls = [Send("tool", {"turn": turn, "arg": i}) for i in range(4)]
        return Command(update={"turn": turn + 1}, goto=calls)

    def tool(call: dict[str, Any]) -> dict[str, Any]:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return {"results": [f"t{call['turn']}.{call['arg']}"]}

    graph = StateGraph(state_reducers={"results": "extend"})
    graph.add_node("model", model, destinations=["tool"])
    graph.add_node("tool", tool).add_edge("tool", "model")
    out = graph.set_entry_point("model").compile().invoke({})
    assert [len(s) for s in seen] == [0, 4, 8, 12]
    assert seen[2][-4:] == sorted(f"t1.{i}" for i in range(4))
    assert out["results"] == [f"t{t}.{i}" for t in range(3) for i in range(4)]
    assert peak == 4


def test_loop_inside_one_branch_is_awaited_by_the_join_of_the_other_branch():
    def refine(state: dict[str, Any]) -> Command:
        count = state.get("count", 0) + 1
        time.sleep(0.005)
        return Command(update={"count": count}, goto="refine" if count < 5 else "done")

    graph = StateGraph(state_reducers={"log": "extend"})
    graph.add_node("start", lambda s: None).add_edge("start", "refine").add_edge("start", "side")
    graph.add_node("refine", refine, destinations=["refine", "done"])
    graph.add_node("done", lambda s: {"log": [f"done{s['count']}"]}).add_edge("done", "join")
    graph.add_node("side", lambda s: {"log": ["side"]}).add_edge("side", "join")
    graph.add_node("join", lambda s: {"joined": list(s["log"])})
    out = graph.set_entry_point("start").compile().invoke({})
    assert out["count"] == 5
    assert out["joined"] == ["done5", "side"]


def test_loop_with_an_inner_fan_out_loop_joins_each_inner_and_outer_wave():
    """An outer loop whose body is itself a fan-out loop: every join fires once per wave."""
    joins: list[tuple[int, int]] = []

    def outer(state: dict[str, Any]) -> dict[str, Any]:
        return {"outer": state.get("outer", 0) + 1, "inner": 0}

    def inner(state: dict[str, Any]) -> Command:
        return Command(update={"inner": state["inner"] + 1}, goto=["x", "y"])

    def inner_join(state: dict[str, Any]) -> Command:
        joins.append((state["outer"], state["inner"]))
        return Command(goto="inner" if state["inner"] < 3 else "outer_join")

    def outer_join(state: dict[str, Any]) -> Command:
        return Command(goto="outer" if state["outer"] < 2 else [])

    graph = StateGraph(state_reducers={"work": "extend"})
    graph.add_node("outer", outer).add_edge("outer", "inner")
    graph.add_node("inner", inner, destinations=["x", "y"])
    graph.add_node("x", lambda s: time.sleep(0.01) or {"work": ["x"]}).add_edge("x", "inner_join")
    graph.add_node("y", lambda s: {"work": ["y"]}).add_edge("y", "inner_join")
    graph.add_node("inner_join", inner_join, destinations=["inner", "outer_join"])
    graph.add_node("outer_join", outer_join, destinations=["outer"])
    out = graph.set_entry_point("outer").compile().invoke({})
    assert joins == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
    assert out["work"] == ["x", "y"] * 6


def test_undeclared_goto_back_upstream_starts_a_new_wave_of_the_join():
    """The loop is only taken at run time: ``again`` has no declared routes at all."""
    seen: list[int] = []

    def head(state: dict[str, Any]) -> Command:
        return Command(update={"round": state.get("round", 0) + 1}, goto=["l", "r"])

    def join(state: dict[str, Any]) -> dict[str, Any]:
        seen.append(len(state["log"]))
        return {}

    def again(state: dict[str, Any]) -> Command:
        return Command(goto="head" if state["round"] < 3 else [])

    graph = StateGraph(state_reducers={"log": "extend"})
    graph.add_node("head", head, destinations=["l", "r"])
    graph.add_node("l", lambda s: {"log": ["l"]}).add_edge("l", "join")
    graph.add_node("r", lambda s: time.sleep(0.01) or {"log": ["r"]}).add_edge("r", "join")
    graph.add_node("join", join).add_edge("join", "again")
    graph.add_node("again", again)
    out = graph.set_entry_point("head").compile().invoke({})
    assert seen == [2, 4, 6]
    assert out["log"] == ["l", "r"] * 3


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_agent_loop_gives_the_same_result_on_both_drivers(mode):
    app = agent_loop(5).compile()
    out = app.invoke({}) if mode == "sync" else __import__("asyncio").run(app.ainvoke({}))
    assert out["results"] == ["a", "b", "c"] * 5


# --- ids, memory, resume ------------------------------------------------------------------


def _run_ids(app: Any, state: dict[str, Any]) -> list[str]:
    ids: list[str] = []
    app.invoke(state, on_event=lambda e: ids.append(e.run_id) if e.kind == "completed" else None)
    return ids


def test_node_run_ids_stay_short_over_500_turns_of_a_three_way_fan_out():
    ids = _run_ids(agent_loop(500).compile(), {})
    assert len(ids) == 501 + 3 * 500
    assert len(set(ids)) == len(ids)
    assert max(len(i) for i in ids) <= 12
    assert ids[:4] == ["0", "0.0.0", "0.1.0", "0.2.0"]


def test_node_run_ids_are_the_same_on_every_run():
    app = agent_loop(30).compile()
    assert _run_ids(app, {}) == _run_ids(app, {})


def _retained_bytes_per_node_run(turns: int) -> float:
    def model(state: dict[str, Any]) -> Command:
        turn = state.get("turn", 0)
        return (
            Command(goto=[])
            if turn == turns
            else Command(update={"turn": turn + 1}, goto=list("abc"))
        )

    graph = StateGraph()
    graph.add_node("model", model, destinations=["a", "b", "c"])
    for name in "abc":
        graph.add_node(name, lambda s, name=name: {name: s["turn"]}).add_edge(name, "model")
    app = graph.set_entry_point("model").compile(max_concurrent=1)
    gc.collect()
    tracemalloc.start()
    try:
        events: list[Any] = []
        app.invoke({}, on_event=events.append)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del events
    return peak / (4 * turns + 1)


def test_memory_per_node_run_stays_flat_as_a_loop_goes_round():
    short = _retained_bytes_per_node_run(100)
    long = _retained_bytes_per_node_run(500)
    assert long < short * 1.3, (short, long)


def test_resume_from_a_journal_taken_in_the_middle_of_a_fan_out_loop():
    calls: list[str] = []
    lock = threading.Lock()

    def counted(name: str):
        def run(state: dict[str, Any]) -> dict[str, Any]:
            with lock:
                calls.append(name)
            return {"results": [f"{name}{state['turn']}"]}

        return run

    def model(state: dict[str, Any]) -> Command:
        with lock:
            calls.append("model")
        turn = state.get("turn", 0)
        return (
            Command(goto=[]) if turn == 6 else Command(update={"turn": turn + 1}, goto=list("abc"))
        )

    graph = StateGraph(state_reducers={"results": "extend"})
    graph.add_node("model", model, destinations=["a", "b", "c"])
    for name in "abc":
        graph.add_node(name, counted(name)).add_edge(name, "model")
    app = graph.set_entry_point("model").compile()

    events: list[Any] = []
    expected = app.invoke({}, on_event=events.append)
    completed = [e for e in events if e.kind == "completed"]
    # A journal cut mid-turn: turn 3's model ran, and only tool "a" of that turn finished.
    cut = next(i for i, e in enumerate(completed) if e.node == "a" and e.run_id.startswith("3."))
    journal = [NodeRecord.from_dict(e.record().to_dict()) for e in completed[: cut + 1]]
    calls.clear()
    resumed = app.invoke({}, journal=journal)
    assert resumed == expected
    assert len(calls) == len(completed) - len(journal)
    # six turns of tools: three whole turns and one "a" were journalled; models 0-3 too
    assert sorted(calls) == sorted(["a"] * 2 + ["b"] * 3 + ["c"] * 3 + ["model"] * 3)
