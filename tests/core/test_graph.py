"""Building a graph: chaining, validation at build/compile time, introspection, mermaid."""

from __future__ import annotations

import re

import pytest

from graphflow_core import (
    Command,
    GraphFlowError,
    GraphValidationError,
    RetryPolicy,
    StateGraph,
)


def noop(state):
    return None


async def async_noop(state):
    return None


def test_builder_methods_return_the_graph_for_chaining():
    graph = StateGraph()
    assert graph.add_node("a", noop) is graph
    assert graph.add_node("b", noop) is graph
    assert graph.add_edge("a", "b") is graph
    assert graph.set_entry_point("a") is graph


def test_chained_graph_compiles_and_runs():
    app = (
        StateGraph()
        .add_node("a", lambda s: {"x": 1})
        .add_node("b", lambda s: {"y": s["x"] + 1})
        .add_edge("a", "b")
        .set_entry_point("a")
        .compile()
    )
    assert app.invoke({}) == {"x": 1, "y": 2}


def _raises_validation(build, node_name):
    """`build` may raise at the offending call or at compile(); either is accepted."""
    with pytest.raises(GraphValidationError) as info:
        build()
    err = info.value
    assert isinstance(err, ValueError)
    assert isinstance(err, GraphFlowError)
    assert err.node == node_name
    assert node_name in str(err)
    return err


def test_edge_to_unknown_target_is_a_validation_error_naming_the_node():
    def build():
        g = StateGraph().add_node("a", noop).set_entry_point("a")
        g.add_edge("a", "ghost_target")
        g.compile()

    _raises_validation(build, "ghost_target")


def test_edge_from_unknown_source_is_a_validation_error_naming_the_node():
    def build():
        g = StateGraph().add_node("a", noop).set_entry_point("a")
        g.add_edge("ghost_source", "a")
        g.compile()

    _raises_validation(build, "ghost_source")


def test_unknown_entry_point_is_a_validation_error_naming_the_node():
    def build():
        g = StateGraph().add_node("a", noop)
        g.set_entry_point("nowhere")
        g.compile()

    _raises_validation(build, "nowhere")


def test_unknown_declared_destination_is_a_validation_error_naming_the_node():
    def build():
        g = StateGraph().add_node("a", noop, destinations=["phantom"]).set_entry_point("a")
        g.compile()

    _raises_validation(build, "phantom")


def test_missing_entry_point_is_a_validation_error():
    graph = StateGraph().add_node("a", noop)
    with pytest.raises(GraphValidationError) as info:
        graph.compile()
    assert isinstance(info.value, ValueError)
    assert "entry" in str(info.value).lower()


def test_duplicate_node_name_is_a_validation_error_naming_the_node():
    def build():
        g = StateGraph().add_node("twice", noop)
        g.add_node("twice", noop)
        g.set_entry_point("twice").compile()

    _raises_validation(build, "twice")


def test_compiled_graph_exposes_nodes_with_their_specs():
    policy = RetryPolicy(max_attempts=4, initial_delay=0.01)
    app = (
        StateGraph()
        .add_node("start", noop, destinations=["left", "right"])
        .add_node("left", async_noop, retry=policy)
        .add_node("right", noop, timeout=1.5)
        .set_entry_point("start")
        .compile()
    )
    specs = {spec.name: spec for spec in app.nodes}
    assert [spec.name for spec in app.nodes] == ["start", "left", "right"]
    assert tuple(specs["start"].destinations) == ("left", "right")
    assert specs["start"].is_async is False
    assert specs["left"].is_async is True
    assert specs["left"].retry == policy
    assert specs["left"].timeout is None
    assert specs["right"].timeout == 1.5
    assert specs["right"].retry is None
    assert not specs["right"].destinations


def test_compiled_graph_exposes_edges_entry_point_and_max_concurrent():
    app = (
        StateGraph()
        .add_node("a", noop)
        .add_node("b", noop)
        .add_node("c", noop)
        .add_edge("a", "c")
        .add_edge("a", "b")
        .add_edge("b", "c")
        .set_entry_point("a")
        .compile(max_concurrent=7)
    )
    assert app.edges == (("a", "c"), ("a", "b"), ("b", "c"))
    assert app.entry_point == "a"
    assert app.max_concurrent == 7


def test_max_concurrent_defaults_to_none():
    app = StateGraph().add_node("a", noop).set_entry_point("a").compile()
    assert app.max_concurrent is None


def test_reducers_are_reported_by_name_including_custom_callables():
    def keep_longest(current, update):
        return max(current, update, key=len)

    app = (
        StateGraph(
            state_reducers={
                "items": "extend",
                "meta": "merge",
                "status": "set",
                "name": keep_longest,
            }
        )
        .add_node("a", noop)
        .set_entry_point("a")
        .compile()
    )
    assert app.reducers == {
        "items": "extend",
        "meta": "merge",
        "status": "set",
        "name": "keep_longest",
    }


def test_unknown_reducer_name_is_rejected():
    with pytest.raises(ValueError):
        StateGraph(state_reducers={"x": "no_such_reducer"}).add_node("a", noop).set_entry_point(
            "a"
        ).compile()


def _mermaid_lines(text):
    return [line.strip() for line in text.splitlines() if line.strip()]


def test_mermaid_includes_every_node_and_every_edge():
    app = (
        StateGraph()
        .add_node("fetch", noop)
        .add_node("parse", noop)
        .add_node("store", noop)
        .add_node("lonely", noop)
        .add_edge("fetch", "parse")
        .add_edge("parse", "store")
        .add_edge("fetch", "store")
        .set_entry_point("fetch")
        .compile()
    )
    text = app.to_mermaid()
    assert isinstance(text, str)
    lines = _mermaid_lines(text)
    for name in ("fetch", "parse", "store", "lonely"):
        assert any(re.search(rf"\b{name}\b", line) for line in lines), name
    for src, dst in app.edges:
        solid = [
            line
            for line in lines
            if re.search(rf"\b{src}\b.*-->.*\b{dst}\b", line) and "-." not in line
        ]
        assert solid, f"no solid arrow {src} --> {dst} in:\n{text}"


def test_mermaid_draws_declared_destinations_as_dashed_arrows():
    app = (
        StateGraph()
        .add_node("router", lambda s: Command(goto="yes"), destinations=["yes", "no"])
        .add_node("yes", noop)
        .add_node("no", noop)
        .add_node("after", noop)
        .add_edge("yes", "after")
        .set_entry_point("router")
        .compile()
    )
    lines = _mermaid_lines(app.to_mermaid())
    for dst in ("yes", "no"):
        dashed = [line for line in lines if re.search(rf"\brouter\b.*-\..*\b{dst}\b", line)]
        assert dashed, f"no dashed arrow router -.-> {dst}"
    # The static edge stays solid, and is not drawn dashed.
    assert any(re.search(r"\byes\b.*-->.*\bafter\b", line) for line in lines)
    assert not any(re.search(r"\byes\b.*-\..*\bafter\b", line) for line in lines)
