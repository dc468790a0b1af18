"""Run-wide caps: the node-run limit, and callbacks that refuse a node run."""

from __future__ import annotations

import pytest

from graphflow_core import Command, NodeError, NodeRunLimitError, Send, StateGraph


def _map(width: int):
    return (
        StateGraph(state_reducers={"items": "extend"})
        .add_node("start", lambda s: Command(goto=[Send("work", i) for i in range(width)]))
        .add_node("work", lambda item: {"items": [item]})
        .set_entry_point("start")
        .compile()
    )


def test_node_run_limit_stops_a_fan_out_wider_than_the_limit_and_names_it():
    with pytest.raises(NodeRunLimitError) as info:
        _map(50).invoke({}, max_node_runs=10)
    assert info.value.limit == 10
    assert info.value.node == "work"
    assert "10" in str(info.value)


def test_node_run_limit_counts_every_node_run_including_the_entry_point():
    assert len(_map(9).invoke({}, max_node_runs=10)["items"]) == 9
    with pytest.raises(NodeRunLimitError):
        _map(10).invoke({}, max_node_runs=10)


def test_node_run_limit_below_one_is_rejected():
    with pytest.raises(ValueError, match="max_node_runs"):
        _map(1).invoke({}, max_node_runs=0)


def test_callback_refusing_a_start_fails_that_node_without_running_it():
    ran: list[int] = []
    app = (
        StateGraph()
        .add_node("start", lambda s: Command(goto="guarded"))
        .add_node("guarded", lambda s: ran.append(1))
        .set_entry_point("start")
        .compile()
    )

    def refuse(event):
        if event.kind == "started" and event.node == "guarded":
            raise PermissionError("not now")

    with pytest.raises(NodeError) as info:
        app.invoke({}, on_event=refuse)
    assert info.value.node == "guarded"
    assert isinstance(info.value.__cause__, PermissionError)
    assert ran == []
