"""Inclusive joins, consistent views of state, and how reducers combine branch updates."""

from __future__ import annotations

import threading

import pytest

from graphflow_core import Command, StateGraph

# A join that waits for a branch never taken would hang; fail fast instead.
pytestmark = pytest.mark.timeout(30)

# --- inclusive join, run once ------------------------------------------------------------

PROCESSORS = {
    "text": ["text_sentiment", "text_entities", "text_keywords"],
    "image": ["image_objects", "image_faces", "image_text"],
    "audio": ["audio_transcribe", "audio_sentiment"],
    "other": ["generic"],
}


def _conditional_router(call_log, make_appender):
    """Pattern 3 of the guide: a classifier picks some of 9 processors, all edge into one join."""

    def classifier(state):
        return Command(update={"kind": state["type"]}, goto=PROCESSORS[state["type"]])

    def aggregator(state):
        call_log.start("aggregator", state)
        return {"analyses_performed": len(state.get("analysis", []))}

    graph = StateGraph(state_reducers={"analysis": "extend"})
    graph.add_node("classifier", classifier)
    for names in PROCESSORS.values():
        for name in names:
            graph.add_node(name, make_appender(name, key="analysis", delay=0.02, log=call_log))
    graph.add_node("aggregator", aggregator)
    graph.set_entry_point("classifier")
    for names in PROCESSORS.values():
        for name in names:
            graph.add_edge(name, "aggregator")
    return graph.compile()


@pytest.mark.parametrize("content_type", ["text", "image", "audio", "other"])
def test_join_waits_only_for_taken_branches_and_runs_once(content_type, call_log, make_appender):
    app = _conditional_router(call_log, make_appender)
    result = app.invoke({"type": content_type})

    taken = PROCESSORS[content_type]
    assert call_log.counts["aggregator"] == 1
    (seen,) = call_log.seen["aggregator"]
    assert sorted(seen["analysis"]) == sorted(taken)
    assert result["analyses_performed"] == len(taken)
    not_taken = {n for names in PROCESSORS.values() for n in names} - set(taken)
    assert not any(call_log.counts[name] for name in not_taken)


@pytest.mark.parametrize("routing", ["goto", "edges"])
def test_join_runs_once_after_unequal_branches(routing, call_log, make_appender):
    graph = StateGraph(state_reducers={"results": "extend"})
    if routing == "goto":
        graph.add_node("start", lambda s: Command(goto=["a", "b"]))
    else:
        graph.add_node("start", lambda s: None)
        graph.add_edge("start", "a").add_edge("start", "b")
    graph.add_node("a", make_appender("a", delay=0.01, log=call_log))
    graph.add_node("b", make_appender("b", delay=0.05, log=call_log))
    graph.add_node("b2", make_appender("b2", delay=0.05, log=call_log))
    graph.add_node("join", make_appender("join", log=call_log))
    graph.add_edge("a", "join").add_edge("b", "b2").add_edge("b2", "join")
    result = graph.set_entry_point("start").compile().invoke({})

    assert call_log.counts["join"] == 1
    assert sorted(call_log.seen["join"][0]["results"]) == ["a", "b", "b2"]
    assert sorted(result["results"]) == ["a", "b", "b2", "join"]


def test_join_fires_once_when_a_predecessor_branch_is_never_taken(call_log, make_appender):
    app = (
        StateGraph(state_reducers={"results": "extend"})
        .add_node("start", lambda s: Command(goto="a"))
        .add_node("a", make_appender("a", log=call_log))
        .add_node("b", make_appender("b", log=call_log))
        .add_node("join", make_appender("join", log=call_log))
        .add_edge("a", "join")
        .add_edge("b", "join")
        .set_entry_point("start")
        .compile()
    )
    result = app.invoke({})
    assert call_log.counts["join"] == 1
    assert call_log.counts["b"] == 0
    assert result["results"] == ["a", "join"]


def test_join_waits_for_a_branch_that_reaches_it_through_a_declared_goto(call_log, make_appender):
    def b(state):
        call_log.start("b", state)
        threading.Event().wait(0.1)
        return Command(update={"results": ["b"]}, goto="c")

    app = (
        StateGraph(state_reducers={"results": "extend"})
        .add_node("start", lambda s: Command(goto=["a", "b"]))
        .add_node("a", make_appender("a", log=call_log))
        .add_node("b", b, destinations=["c"])
        .add_node("c", make_appender("c", delay=0.05, log=call_log))
        .add_node("join", make_appender("join", log=call_log))
        .add_edge("a", "join")
        .add_edge("c", "join")
        .set_entry_point("start")
        .compile()
    )
    app.invoke({})
    assert call_log.counts["join"] == 1
    assert sorted(call_log.seen["join"][0]["results"]) == ["a", "b", "c"]


def test_join_runs_once_per_loop_iteration(call_log, make_appender):
    def start(state):
        return Command(update={"round": state.get("round", 0) + 1}, goto=["a", "b"])

    def join(state):
        call_log.start("join", state)
        return Command(goto="start" if state["round"] < 3 else ())

    app = (
        StateGraph(state_reducers={"results": "extend"})
        .add_node("start", start)
        .add_node("a", make_appender("a", delay=0.01))
        .add_node("b", make_appender("b", delay=0.03))
        .add_node("join", join)
        .add_edge("a", "join")
        .add_edge("b", "join")
        .set_entry_point("start")
        .compile()
    )
    result = app.invoke({})
    assert result["round"] == 3
    assert call_log.counts["join"] == 3
    assert [len(seen["results"]) for seen in call_log.seen["join"]] == [2, 4, 6]


def test_two_fan_out_stages_each_join_once(call_log, make_appender):
    app = (
        StateGraph(state_reducers={"results": "extend"})
        .add_node("start", lambda s: Command(goto=["a1", "a2", "a3"]))
        .add_node("a1", make_appender("a1", delay=0.03))
        .add_node("a2", make_appender("a2", delay=0.01))
        .add_node("a3", make_appender("a3"))
        .add_node("mid", make_appender("mid", log=call_log))
        .add_node("b1", make_appender("b1", delay=0.02))
        .add_node("b2", make_appender("b2"))
        .add_node("end", make_appender("end", log=call_log))
        .add_edge("a1", "mid")
        .add_edge("a2", "mid")
        .add_edge("a3", "mid")
        .add_edge("mid", "b1")
        .add_edge("mid", "b2")
        .add_edge("b1", "end")
        .add_edge("b2", "end")
        .set_entry_point("start")
        .compile()
    )
    result = app.invoke({})
    assert call_log.counts["mid"] == 1
    assert call_log.counts["end"] == 1
    assert sorted(call_log.seen["mid"][0]["results"]) == ["a1", "a2", "a3"]
    assert result["results"] == ["a1", "a2", "a3", "mid", "b1", "b2", "end"]


# --- consistent views --------------------------------------------------------------------


def test_sibling_never_sees_an_update_of_a_sibling_that_finished_first(call_log):
    a_done = threading.Event()

    def a(state):
        call_log.start("a", state)
        a_done.set()
        return {"from_a": True, "log": ["a"]}

    def b(state):
        # Wait until a has finished (and had time to be merged), then look at our state.
        a_done.wait(2)
        threading.Event().wait(0.1)
        call_log.start("b", state)
        return {"log": ["b"]}

    def join(state):
        call_log.start("join", state)
        return None

    app = (
        StateGraph(state_reducers={"log": "extend"})
        .add_node("start", lambda s: Command(update={"log": ["start"]}, goto=["a", "b"]))
        .add_node("a", a)
        .add_node("b", b)
        .add_node("join", join)
        .add_edge("a", "join")
        .add_edge("b", "join")
        .set_entry_point("start")
        .compile()
    )
    app.invoke({"input": 1})
    (seen_by_b,) = call_log.seen["b"]
    assert "from_a" not in seen_by_b
    assert seen_by_b["log"] == ["start"]
    assert seen_by_b["input"] == 1
    (seen_by_join,) = call_log.seen["join"]
    assert seen_by_join["from_a"] is True
    assert seen_by_join["log"] == ["start", "a", "b"]


def test_sibling_view_is_isolated_even_when_siblings_run_one_after_another(call_log):
    def writer(name):
        def node(state):
            call_log.start(name, state)
            return {"log": [name], f"seen_{name}": list(state.get("log", []))}

        return node

    app = (
        StateGraph(state_reducers={"log": "extend"})
        .add_node("start", lambda s: Command(update={"log": ["start"]}, goto=["a", "b", "c"]))
        .add_node("a", writer("a"))
        .add_node("b", writer("b"))
        .add_node("c", writer("c"))
        .set_entry_point("start")
        .compile(max_concurrent=1)
    )
    result = app.invoke({})
    assert result["seen_a"] == result["seen_b"] == result["seen_c"] == ["start"]
    assert result["log"] == ["start", "a", "b", "c"]


def test_node_sees_updates_of_everything_on_its_causal_path_only(call_log):
    def a(state):
        return {"a": 1}

    def a2(state):
        call_log.start("a2", state)
        return {"a2": 1}

    def slow(state):
        threading.Event().wait(0.15)
        call_log.start("slow", state)
        return {"slow": 1}

    app = (
        StateGraph()
        .add_node("start", lambda s: Command(update={"start": 1}, goto=["a", "slow"]))
        .add_node("a", a)
        .add_node("a2", a2)
        .add_node("slow", slow)
        .add_edge("a", "a2")
        .set_entry_point("start")
        .compile()
    )
    result = app.invoke({"input": 0})
    (seen_by_a2,) = call_log.seen["a2"]
    assert seen_by_a2 == {"input": 0, "start": 1, "a": 1}
    (seen_by_slow,) = call_log.seen["slow"]
    assert seen_by_slow == {"input": 0, "start": 1}
    assert result == {"input": 0, "start": 1, "a": 1, "a2": 1, "slow": 1}


# --- reducers ----------------------------------------------------------------------------


def _fan_out(reducers, branch_updates, delays=None):
    """start → goto every branch (in order); each branch returns its update after a delay."""
    delays = delays or {}
    graph = StateGraph(state_reducers=reducers)
    graph.add_node("start", lambda s: Command(goto=list(branch_updates)))
    for name, update in branch_updates.items():

        def node(state, update=update, name=name):
            threading.Event().wait(delays.get(name, 0.0))
            return update

        graph.add_node(name, node)
    return graph.set_entry_point("start").compile()


def test_extend_reducer_concatenates_lists_after_the_input_value():
    app = _fan_out(
        {"items": "extend"},
        {"a": {"items": [1, 2]}, "b": {"items": [3]}},
        delays={"a": 0.05},
    )
    assert app.invoke({"items": [0]})["items"] == [0, 1, 2, 3]
    assert app.invoke({})["items"] == [1, 2, 3]


def test_merge_reducer_merges_dicts_later_branches_win_per_key():
    app = _fan_out(
        {"meta": "merge"},
        {"a": {"meta": {"x": 1, "shared": "a"}}, "b": {"meta": {"y": 2, "shared": "b"}}},
        delays={"b": 0.0, "a": 0.05},
    )
    result = app.invoke({"meta": {"input": True}})
    assert result["meta"] == {"input": True, "x": 1, "y": 2, "shared": "b"}


@pytest.mark.parametrize("reducers", [{}, {"status": "set"}], ids=["default", "explicit"])
def test_set_reducer_is_last_write_wins_in_branch_order(reducers):
    app = _fan_out(reducers, {"a": {"status": "a"}, "b": {"status": "b"}}, delays={"a": 0.05})
    assert app.invoke({"status": "input"})["status"] == "b"


def test_custom_callable_reducer_receives_current_and_update():
    calls = []

    def concat(current, update):
        calls.append((current, update))
        return current + update

    app = _fan_out(
        {"text": concat},
        {"a": {"text": "A"}, "b": {"text": "B"}, "c": {"text": "C"}},
        delays={"a": 0.06, "b": 0.03},
    )
    assert app.invoke({"text": ">"})["text"] == ">ABC"
    # However often the engine folds views, every call extends the previous value in order.
    assert set(calls) >= {(">", "A"), (">A", "B"), (">AB", "C")}
    assert set(calls) <= {(">", "A"), (">A", "B"), (">AB", "C")}


def test_node_returning_none_leaves_state_unchanged_and_routing_continues():
    app = (
        StateGraph()
        .add_node("a", lambda s: None)
        .add_node("b", lambda s: {"after": s["x"]})
        .add_edge("a", "b")
        .set_entry_point("a")
        .compile()
    )
    assert app.invoke({"x": 5}) == {"x": 5, "after": 5}


def test_command_goto_and_static_edges_both_route():
    app = (
        StateGraph(state_reducers={"results": "extend"})
        .add_node("start", lambda s: Command(update={"results": ["start"]}, goto="dynamic"))
        .add_node("static", lambda s: {"results": ["static"]})
        .add_node("dynamic", lambda s: {"results": ["dynamic"]})
        .add_edge("start", "static")
        .set_entry_point("start")
        .compile()
    )
    assert sorted(app.invoke({})["results"]) == ["dynamic", "start", "static"]


def test_command_without_update_only_routes():
    app = (
        StateGraph()
        .add_node("start", lambda s: Command(goto=["x"]))
        .add_node("x", lambda s: {"x": True})
        .set_entry_point("start")
        .compile()
    )
    assert app.invoke({"keep": 1}) == {"keep": 1, "x": True}


def test_join_waits_for_an_undeclared_goto_node_still_running(call_log, make_appender):
    # 'b' has no edges and declares no destinations, so it may goto anywhere: the join
    # must not fire on 'a' alone while 'b' runs, or it would run twice.
    import time

    def b(state):
        time.sleep(0.05)
        return Command(update={"results": ["b"]}, goto="c")

    graph = StateGraph(state_reducers={"results": "extend"})
    graph.add_node("start", lambda s: Command(goto=["a", "b"]))
    graph.add_node("a", make_appender("a", log=call_log)).add_edge("a", "join")
    graph.add_node("b", b)
    graph.add_node("c", make_appender("c", log=call_log)).add_edge("c", "join")
    graph.add_node("join", make_appender("join", log=call_log))
    result = graph.set_entry_point("start").compile().invoke({})

    assert call_log.counts["join"] == 1
    assert sorted(call_log.seen["join"][0]["results"]) == ["a", "b", "c"]
    assert result["results"] == ["a", "b", "c", "join"]


def test_parallel_sinks_without_edges_do_not_wait_for_each_other():
    import time

    started: dict[str, float] = {}

    def sink(name):
        def run(state):
            started[name] = time.monotonic()
            time.sleep(0.2)

        return run

    graph = StateGraph().add_node("start", lambda s: Command(goto=["x", "y", "z"]))
    for name in "xyz":
        graph.add_node(name, sink(name))
    t0 = time.monotonic()
    graph.set_entry_point("start").compile().invoke({})
    assert time.monotonic() - t0 < 0.45
    assert max(started.values()) - min(started.values()) < 0.1
