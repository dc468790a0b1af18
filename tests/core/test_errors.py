"""Run-time errors: bad routes, bad results, failing nodes, recursion limit; the error tree."""

from __future__ import annotations

import asyncio
import time

import pytest

from graphflow_core import (
    Command,
    EventKind,
    GraphFlowError,
    GraphValidationError,
    InvalidNodeResultError,
    InvalidRouteError,
    NodeError,
    NodeTimeoutError,
    RecursionLimitError,
    RunCancelledError,
    Send,
    StateGraph,
)


def test_all_engine_errors_form_one_tree_under_graphflow_error():
    assert issubclass(GraphFlowError, Exception)
    assert issubclass(GraphValidationError, GraphFlowError)
    assert issubclass(GraphValidationError, ValueError)
    assert issubclass(InvalidRouteError, GraphFlowError)
    assert issubclass(InvalidRouteError, ValueError)
    assert issubclass(InvalidNodeResultError, GraphFlowError)
    assert issubclass(InvalidNodeResultError, TypeError)
    assert issubclass(NodeError, GraphFlowError)
    assert issubclass(NodeTimeoutError, NodeError)
    assert issubclass(NodeTimeoutError, TimeoutError)
    assert issubclass(RecursionLimitError, GraphFlowError)
    assert issubclass(RecursionLimitError, RecursionError)
    assert issubclass(RunCancelledError, GraphFlowError)


def test_goto_to_unknown_node_raises_invalid_route_naming_node_and_target():
    app = (
        StateGraph()
        .add_node("router", lambda s: Command(goto=["fine", "missing_target"]))
        .add_node("fine", lambda s: None)
        .set_entry_point("router")
        .compile()
    )
    with pytest.raises(InvalidRouteError) as info:
        app.invoke({})
    assert info.value.node == "router"
    assert info.value.target == "missing_target"
    assert "router" in str(info.value)
    assert "missing_target" in str(info.value)


@pytest.mark.parametrize("bad_result", ["a string", ["a", "list"], 42, ("tuple",)])
def test_node_returning_something_other_than_dict_none_or_command_is_rejected(bad_result):
    app = (
        StateGraph()
        .add_node("ok", lambda s: {"x": 1})
        .add_node("sloppy", lambda s: bad_result)
        .add_edge("ok", "sloppy")
        .set_entry_point("ok")
        .compile()
    )
    with pytest.raises(InvalidNodeResultError) as info:
        app.invoke({})
    assert info.value.node == "sloppy"
    assert "sloppy" in str(info.value)
    assert isinstance(info.value, TypeError)


def test_async_node_returning_a_bad_result_is_rejected():
    async def sloppy(state):
        return "oops"

    app = StateGraph().add_node("sloppy", sloppy).set_entry_point("sloppy").compile()
    with pytest.raises(InvalidNodeResultError) as info:
        app.invoke({})
    assert info.value.node == "sloppy"


def test_node_raising_becomes_node_error_with_the_original_as_cause():
    original = ZeroDivisionError("division by zero in node")

    def broken(state):
        raise original

    app = (
        StateGraph()
        .add_node("start", lambda s: None)
        .add_node("broken", broken)
        .add_edge("start", "broken")
        .set_entry_point("start")
        .compile()
    )
    with pytest.raises(NodeError) as info:
        app.invoke({})
    err = info.value
    assert err.node == "broken"
    assert "broken" in str(err)
    assert err.__cause__ is original
    assert isinstance(err.run_id, str) and err.run_id


def test_async_node_raising_becomes_node_error():
    async def broken(state):
        await asyncio.sleep(0)
        raise KeyError("missing")

    app = StateGraph().add_node("broken", broken).set_entry_point("broken").compile()
    with pytest.raises(NodeError) as info:
        asyncio.run(app.ainvoke({}))
    assert info.value.node == "broken"
    assert isinstance(info.value.__cause__, KeyError)


def test_running_siblings_finish_and_keep_results_when_a_node_fails(
    make_appender, call_log, collected_events
):
    events, on_event = collected_events

    def broken(state):
        time.sleep(0.05)
        raise RuntimeError("broken branch")

    app = (
        StateGraph(state_reducers={"results": "extend"})
        .add_node("start", lambda s: Command(goto=["quick", "broken", "slow"]))
        .add_node("quick", make_appender("quick", log=call_log))
        .add_node("broken", broken)
        .add_node("slow", make_appender("slow", delay=0.3, log=call_log))
        .add_node("after_slow", make_appender("after_slow", log=call_log))
        .add_edge("slow", "after_slow")
        .set_entry_point("start")
        .compile()
    )
    t0 = time.monotonic()
    with pytest.raises(NodeError) as info:
        app.invoke({}, on_event=on_event)
    elapsed = time.monotonic() - t0
    assert info.value.node == "broken"
    completed = {ev.node: ev for ev in events if ev.kind == EventKind.COMPLETED}
    assert completed["quick"].update == {"results": ["quick"]}
    # slow was running when broken failed: it finished and its result was emitted ...
    assert completed["slow"].update == {"results": ["slow"]}
    assert elapsed >= 0.25
    # ... but nothing new started after the failure.
    assert call_log.counts["after_slow"] == 0
    assert [ev.node for ev in events if ev.kind == EventKind.FAILED] == ["broken"]


# --- recursion limit ---------------------------------------------------------------------


def _counter_loop(target):
    def count(state):
        n = state.get("count", 0) + 1
        return Command(update={"count": n}, goto="count" if n < target else ())

    return StateGraph().add_node("count", count).set_entry_point("count").compile()


def test_counter_loop_to_five_succeeds_with_the_default_limit():
    assert _counter_loop(5).invoke({}) == {"count": 5}


def test_recursion_limit_bounds_loop_iterations_and_names_node_and_limit():
    app = _counter_loop(1_000_000)
    with pytest.raises(RecursionLimitError) as info:
        app.invoke({}, recursion_limit=7)
    err = info.value
    assert isinstance(err, RecursionError)
    assert err.limit == 7
    assert err.node == "count"
    assert "count" in str(err)
    assert "7" in str(err)


def test_recursion_limit_is_set_per_invoke():
    app = _counter_loop(30)
    with pytest.raises(RecursionLimitError):
        app.invoke({}, recursion_limit=10)
    assert app.invoke({}, recursion_limit=100) == {"count": 30}


def test_endless_ping_pong_hits_the_limit_instead_of_hanging():
    app = (
        StateGraph()
        .add_node("ping", lambda s: Command(goto="pong"))
        .add_node("pong", lambda s: Command(goto="ping"))
        .set_entry_point("ping")
        .compile()
    )
    t0 = time.monotonic()
    with pytest.raises(RecursionLimitError) as info:
        app.invoke({}, recursion_limit=20)
    assert info.value.node in {"ping", "pong"}
    assert info.value.limit == 20
    assert time.monotonic() - t0 < 5


def test_wide_goto_list_fan_out_is_not_recursion():
    names = [f"w{i}" for i in range(2_000)]
    graph = StateGraph(state_reducers={"results": "extend"})
    graph.add_node("start", lambda s: Command(goto=names))
    for i, name in enumerate(names):
        graph.add_node(name, lambda s, i=i: {"results": [i]})
        graph.add_edge(name, "join")
    graph.add_node("join", lambda s: {"total": len(s["results"])})
    result = graph.set_entry_point("start").compile().invoke({})
    assert result["total"] == 2_000
    assert result["results"] == list(range(2_000))


def test_wide_send_fan_out_is_not_recursion_even_with_a_small_limit():
    app = (
        StateGraph(state_reducers={"results": "extend"})
        .add_node("start", lambda s: Command(goto=[Send("w", i) for i in range(500)]))
        .add_node("w", lambda i: {"results": [i]})
        .set_entry_point("start")
        .compile()
    )
    assert app.invoke({}, recursion_limit=5)["results"] == list(range(500))
