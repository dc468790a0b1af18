"""Map fan-out with Send: one node run per payload, joined once, in Send order."""

from __future__ import annotations

import threading

import pytest

from graphflow_core import Command, InvalidRouteError, Send, StateGraph


def _map_graph(n, seen=None, join_calls=None):
    lock = threading.Lock()

    def start(state):
        return Command(
            update={"started": True},
            goto=[Send("worker", {"i": i, "item": f"item-{i}"}) for i in range(n)],
        )

    def worker(payload):
        if seen is not None:
            with lock:
                seen.append(dict(payload))
        return {"results": [payload["item"].upper()]}

    def join(state):
        if join_calls is not None:
            join_calls.append(len(state["results"]))
        return {"count": len(state["results"])}

    return (
        StateGraph(state_reducers={"results": "extend"})
        .add_node("start", start)
        .add_node("worker", worker)
        .add_node("join", join)
        .add_edge("worker", "join")
        .set_entry_point("start")
        .compile()
    )


def test_ten_thousand_sends_each_get_their_payload_and_join_once_in_send_order():
    n = 10_000
    seen: list[dict] = []
    join_calls: list[int] = []
    # Default recursion limit: a wide fan-out is not recursion.
    result = _map_graph(n, seen, join_calls).invoke({"big_input": list(range(5))})
    assert join_calls == [n]
    assert result["count"] == n
    assert result["results"] == [f"ITEM-{i}" for i in range(n)]
    assert len(seen) == n
    # Each worker's state is exactly its own payload, not the graph state.
    assert sorted(p["i"] for p in seen) == list(range(n))
    assert all(p == {"i": p["i"], "item": f"item-{p['i']}"} for p in seen)


def test_send_payload_is_the_worker_state_even_when_it_is_not_a_dict():
    got = []
    lock = threading.Lock()

    def worker(payload):
        with lock:
            got.append(payload)
        return {"squares": [payload * payload]}

    app = (
        StateGraph(state_reducers={"squares": "extend"})
        .add_node("start", lambda s: Command(goto=[Send("worker", i) for i in s["numbers"]]))
        .add_node("worker", worker)
        .set_entry_point("start")
        .compile()
    )
    assert app.invoke({"numbers": [3, 1, 2]}) == {"numbers": [3, 1, 2], "squares": [9, 1, 4]}
    assert sorted(got) == [1, 2, 3]


def test_sends_and_node_names_mix_in_one_goto_list():
    app = (
        StateGraph(state_reducers={"log": "extend"})
        .add_node(
            "start",
            lambda s: Command(goto=["plain", Send("worker", {"n": 1}), Send("worker", {"n": 2})]),
        )
        .add_node("plain", lambda s: {"log": [f"plain saw {sorted(s)}"]})
        .add_node("worker", lambda p: {"log": [f"worker {p['n']}"]})
        .set_entry_point("start")
        .compile()
    )
    result = app.invoke({"x": 1})
    assert result["log"] == ["plain saw ['x']", "worker 1", "worker 2"]


def test_single_send_as_goto():
    app = (
        StateGraph()
        .add_node("start", lambda s: Command(goto=Send("worker", {"v": 42})))
        .add_node("worker", lambda p: {"got": p["v"]})
        .set_entry_point("start")
        .compile()
    )
    assert app.invoke({}) == {"got": 42}


def test_send_to_unknown_node_is_an_invalid_route():
    app = (
        StateGraph()
        .add_node("start", lambda s: Command(goto=[Send("nobody", {})]))
        .set_entry_point("start")
        .compile()
    )
    with pytest.raises(InvalidRouteError) as info:
        app.invoke({})
    assert info.value.node == "start"
    assert info.value.target == "nobody"


def test_map_workers_can_continue_to_their_own_successors():
    app = (
        StateGraph(state_reducers={"out": "extend"})
        .add_node("start", lambda s: Command(goto=[Send("double", {"v": v}) for v in (1, 2, 3)]))
        .add_node("double", lambda p: {"out": [p["v"] * 2]})
        .add_node("after", lambda s: {"after_saw": list(s["out"])})
        .add_edge("double", "after")
        .set_entry_point("start")
        .compile()
    )
    result = app.invoke({})
    assert result["out"] == [2, 4, 6]
    assert result["after_saw"] == [2, 4, 6]
