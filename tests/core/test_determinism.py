"""Deterministic results: merge order depends on graph structure, never on timing."""

from __future__ import annotations

import random
import threading

import pytest

from graphflow_core import Command, Send, StateGraph

# A join that waits for a branch never taken would hang; fail fast instead.
pytestmark = pytest.mark.timeout(30)


def _sleep(seconds):
    threading.Event().wait(seconds)


def test_pattern_1_results_come_out_in_goto_order_although_c_finishes_first(make_appender):
    delays = {"a": 0.3, "b": 0.5, "c": 0.2, "d": 0.4}
    graph = StateGraph(state_reducers={"results": "extend"})
    graph.add_node("start", lambda s: Command(update={"status": "processing"}, goto=list(delays)))
    for name, delay in delays.items():
        graph.add_node(name, make_appender(name.upper(), delay=delay))
        graph.add_edge(name, "combiner")
    graph.add_node("combiner", lambda s: {"summary": f"{len(s['results'])} results"})
    result = graph.set_entry_point("start").compile().invoke({})
    assert result["results"] == ["A", "B", "C", "D"]
    assert result["summary"] == "4 results"


def _random_fan_out():
    """Eight workers that each sleep a random time (drawn at call time) before returning."""
    names = [f"w{i}" for i in range(8)]
    graph = StateGraph(state_reducers={"results": "extend", "meta": "merge"})
    graph.add_node("start", lambda s: Command(update={"stage": "start"}, goto=names))
    for name in names:

        def node(state, name=name):
            _sleep(random.uniform(0, 0.03))
            return {"results": [name], "meta": {name: True, "last": name}, "stage": name}

        graph.add_node(name, node)
        graph.add_edge(name, "join")

    def join(state):
        return {"order_seen": list(state["results"]), "stage": "join:" + state["stage"]}

    graph.add_node("join", join)
    return graph.set_entry_point("start").compile()


def test_fan_out_with_random_sleeps_gives_identical_state_every_run():
    app = _random_fan_out()
    outcomes = [app.invoke({"results": ["input"]}) for _ in range(20)]
    first = outcomes[0]
    expected_order = ["input"] + [f"w{i}" for i in range(8)]
    assert first["results"] == expected_order
    assert first["order_seen"] == expected_order
    assert first["meta"]["last"] == "w7"
    assert first["stage"] == "join:w7"
    for outcome in outcomes[1:]:
        assert outcome == first


def _two_chains(delays):
    graph = StateGraph(state_reducers={"results": "extend"})
    graph.add_node("start", lambda s: Command(goto=["a1", "b1"]))
    for name in ("a1", "a2", "b1", "b2"):

        def node(state, name=name):
            _sleep(delays[name])
            return {"results": [name]}

        graph.add_node(name, node)
    graph.add_edge("a1", "a2").add_edge("b1", "b2")
    graph.add_edge("a2", "join").add_edge("b2", "join")
    graph.add_node("join", lambda s: {"at_join": list(s["results"])})
    return graph.set_entry_point("start").compile()


@pytest.mark.parametrize(
    "delays",
    [
        {"a1": 0.0, "a2": 0.0, "b1": 0.05, "b2": 0.05},
        {"a1": 0.08, "a2": 0.08, "b1": 0.0, "b2": 0.0},
        {"a1": 0.0, "a2": 0.1, "b1": 0.05, "b2": 0.0},
        {"a1": 0.1, "a2": 0.0, "b1": 0.0, "b2": 0.05},
    ],
)
def test_chains_extending_one_list_join_in_branch_order_whatever_the_sleeps(delays):
    result = _two_chains(delays).invoke({})
    assert result["at_join"] == ["a1", "a2", "b1", "b2"]
    assert result["results"] == ["a1", "a2", "b1", "b2"]


def test_goto_targets_merge_before_static_edge_targets_in_declaration_order():
    delays = {"g2": 0.08, "g1": 0.04, "e1": 0.02, "e2": 0.0}
    graph = StateGraph(state_reducers={"results": "extend"})
    graph.add_node("start", lambda s: Command(goto=["g2", "g1"]))
    for name, delay in delays.items():

        def node(state, name=name, delay=delay):
            _sleep(delay)
            return {"results": [name]}

        graph.add_node(name, node)
    graph.add_edge("start", "e1").add_edge("start", "e2")
    result = graph.set_entry_point("start").compile().invoke({})
    assert result["results"] == ["g2", "g1", "e1", "e2"]


def test_last_write_wins_follows_branch_order_not_finish_order():
    graph = StateGraph()
    graph.add_node("start", lambda s: Command(goto=["slow", "fast"]))
    graph.add_node("slow", lambda s: _sleep(0.1) or {"winner": "slow"})
    graph.add_node("fast", lambda s: {"winner": "fast"})
    assert graph.set_entry_point("start").compile().invoke({})["winner"] == "fast"

    graph = StateGraph()
    graph.add_node("start", lambda s: Command(goto=["fast", "slow"]))
    graph.add_node("slow", lambda s: _sleep(0.1) or {"winner": "slow"})
    graph.add_node("fast", lambda s: {"winner": "fast"})
    assert graph.set_entry_point("start").compile().invoke({})["winner"] == "slow"


def _cause_and_effect(a_delay, b_delay):
    graph = StateGraph(state_reducers={"results": "extend"})
    graph.add_node("start", lambda s: Command(update={"results": ["start"]}, goto=["a", "b"]))
    graph.add_node("a", lambda s: _sleep(a_delay) or {"results": ["a"]})
    graph.add_node("a_child", lambda s: {"results": ["a_child"]})
    graph.add_node("b", lambda s: _sleep(b_delay) or {"results": ["b"]})
    graph.add_edge("a", "a_child")
    return graph.set_entry_point("start").compile().invoke({})["results"]


def test_effects_merge_after_their_causes_in_the_same_order_whatever_the_timing():
    b_last = _cause_and_effect(a_delay=0.0, b_delay=0.1)
    assert b_last[0] == "start"
    assert b_last.index("a") < b_last.index("a_child")
    assert b_last.index("a") < b_last.index("b")
    assert sorted(b_last) == ["a", "a_child", "b", "start"]
    assert _cause_and_effect(a_delay=0.1, b_delay=0.0) == b_last


def test_send_results_merge_in_send_list_order():
    def start(state):
        return Command(goto=[Send("work", {"i": i}) for i in range(12)])

    def work(payload):
        _sleep((12 - payload["i"]) * 0.005)
        return {"out": [payload["i"]]}

    app = (
        StateGraph(state_reducers={"out": "extend"})
        .add_node("start", start)
        .add_node("work", work)
        .set_entry_point("start")
        .compile()
    )
    assert app.invoke({})["out"] == list(range(12))


def test_run_ids_are_the_same_on_every_run():
    def collect():
        events = []
        _random_fan_out().invoke({}, on_event=events.append)
        completed = [ev for ev in events if ev.kind == "completed"]
        return sorted((ev.run_id, ev.node, tuple(ev.parents)) for ev in completed)

    first = collect()
    assert len(first) == 10
    assert len({run_id for run_id, _, _ in first}) == 10
    for _ in range(3):
        assert collect() == first
