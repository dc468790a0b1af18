"""Events: on_event, stream and astream; their fields and their causal order."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from graphflow_core import (
    Command,
    EventKind,
    NodeError,
    NodeEvent,
    RunCompleted,
    StateGraph,
)


def _diamond(make_appender):
    """start → goto [a, b]; a → a2 → join; b → join. Branch a is slow."""
    return (
        StateGraph(state_reducers={"results": "extend"})
        .add_node("start", lambda s: Command(update={"results": ["start"]}, goto=["a", "b"]))
        .add_node("a", make_appender("a", delay=0.05))
        .add_node("a2", make_appender("a2", delay=0.02))
        .add_node("b", make_appender("b"))
        .add_node("join", make_appender("join"))
        .add_edge("a", "a2")
        .add_edge("a2", "join")
        .add_edge("b", "join")
        .set_entry_point("start")
        .compile()
    )


def _by_kind(events, kind):
    return [ev for ev in events if ev.kind == kind]


def test_event_kind_is_a_string_enum():
    assert EventKind.STARTED == "started"
    assert EventKind.COMPLETED == "completed"
    assert EventKind.FAILED == "failed"


def test_every_node_run_emits_started_then_completed(make_appender, collected_events):
    events, on_event = collected_events
    _diamond(make_appender).invoke({}, on_event=on_event)
    assert all(isinstance(ev, NodeEvent) for ev in events)
    started = _by_kind(events, EventKind.STARTED)
    completed = _by_kind(events, EventKind.COMPLETED)
    assert sorted(ev.node for ev in started) == ["a", "a2", "b", "join", "start"]
    assert sorted(ev.node for ev in completed) == ["a", "a2", "b", "join", "start"]
    assert not _by_kind(events, EventKind.FAILED)
    for ev in completed:
        (start_ev,) = [s for s in started if s.run_id == ev.run_id]
        assert start_ev.node == ev.node
        assert events.index(start_ev) < events.index(ev)
    assert len({ev.run_id for ev in completed}) == 5


def test_event_fields_hold_timing_attempt_delta_and_goto(make_appender, collected_events):
    events, on_event = collected_events
    before = time.monotonic()
    _diamond(make_appender).invoke({"results": ["input"]}, on_event=on_event)
    after = time.monotonic()
    for ev in events:
        assert isinstance(ev.run_id, str)
        assert ev.attempt == 1
        assert before <= ev.started_at <= after
        if ev.kind == EventKind.STARTED:
            assert ev.ended_at is None
        else:
            assert ev.started_at <= ev.ended_at <= after
    completed = {ev.node: ev for ev in _by_kind(events, EventKind.COMPLETED)}
    assert completed["start"].update == {"results": ["start"]}
    assert tuple(completed["start"].goto) == ("a", "b")
    assert completed["a"].update == {"results": ["a"]}
    assert tuple(completed["a"].goto) == ()
    assert completed["join"].update == {"results": ["join"]}
    # The slow node's event really measured its run.
    assert completed["a"].ended_at - completed["a"].started_at >= 0.04


def test_parents_are_the_run_ids_of_causal_parents(make_appender, collected_events):
    events, on_event = collected_events
    _diamond(make_appender).invoke({}, on_event=on_event)
    completed = {ev.node: ev for ev in _by_kind(events, EventKind.COMPLETED)}
    run_id = {node: ev.run_id for node, ev in completed.items()}
    assert tuple(completed["start"].parents) == ()
    assert tuple(completed["a"].parents) == (run_id["start"],)
    assert tuple(completed["b"].parents) == (run_id["start"],)
    assert tuple(completed["a2"].parents) == (run_id["a"],)
    assert set(completed["join"].parents) == {run_id["a2"], run_id["b"]}
    for ev in _by_kind(events, EventKind.STARTED):
        assert ev.parents == completed[ev.node].parents


def test_parent_completed_event_is_delivered_before_child_started():
    names = [f"w{i}" for i in range(6)]
    graph = StateGraph(state_reducers={"results": "extend"})
    graph.add_node("start", lambda s: Command(goto=names))
    for i, name in enumerate(names):
        graph.add_node(name, lambda s, i=i: time.sleep(0.01 * (i % 3)) or {"results": [i]})
        graph.add_node(f"{name}_next", lambda s: None)
        graph.add_edge(name, f"{name}_next")
        graph.add_edge(f"{name}_next", "join")
    graph.add_node("join", lambda s: None)
    app = graph.set_entry_point("start").compile()
    for _ in range(5):
        events = []
        app.invoke({}, on_event=events.append)
        delivered = set()
        for ev in events:
            if ev.kind == EventKind.STARTED:
                assert set(ev.parents) <= delivered, ev
            elif ev.kind == EventKind.COMPLETED:
                delivered.add(ev.run_id)
        assert len(delivered) == 1 + 2 * len(names) + 1


def test_on_event_is_called_in_the_invoking_thread(make_appender):
    threads = set()
    _diamond(make_appender).invoke({}, on_event=lambda ev: threads.add(threading.get_ident()))
    assert threads == {threading.get_ident()}


def test_completed_update_is_the_delta_not_the_accumulated_state(collected_events):
    events, on_event = collected_events
    graph = StateGraph(state_reducers={"items": "extend"})
    names = [f"n{i}" for i in range(10)]
    for i, name in enumerate(names):
        graph.add_node(name, lambda s, i=i: {"items": [i], "last": i})
        if i:
            graph.add_edge(names[i - 1], name)
    graph.set_entry_point("n0").compile().invoke({"items": ["input"]}, on_event=on_event)
    updates = [ev.update for ev in _by_kind(events, EventKind.COMPLETED)]
    assert updates == [{"items": [i], "last": i} for i in range(10)]


def test_exception_in_on_event_for_completed_fails_that_node():
    class Rejected(Exception):
        pass

    def on_event(ev):
        if ev.kind == EventKind.COMPLETED and ev.node == "b":
            raise Rejected("cannot store")

    ran_c = []
    app = (
        StateGraph()
        .add_node("a", lambda s: {"a": 1})
        .add_node("b", lambda s: {"b": 1})
        .add_node("c", lambda s: ran_c.append(1) or {"c": 1})
        .add_edge("a", "b")
        .add_edge("b", "c")
        .set_entry_point("a")
        .compile()
    )
    with pytest.raises(NodeError) as info:
        app.invoke({}, on_event=on_event)
    assert info.value.node == "b"
    assert isinstance(info.value.__cause__, Rejected)
    assert ran_c == []


def test_failed_event_carries_the_error():
    events = []
    boom = RuntimeError("boom")

    def bad(state):
        raise boom

    app = StateGraph().add_node("bad", bad).set_entry_point("bad").compile()
    with pytest.raises(NodeError):
        app.invoke({}, on_event=events.append)
    (failed,) = _by_kind(events, EventKind.FAILED)
    assert failed.node == "bad"
    assert failed.error is boom
    assert failed.retrying is False
    assert failed.attempt == 1
    assert failed.ended_at is not None and failed.ended_at >= failed.started_at


def test_stream_yields_events_then_run_completed_with_the_final_state(make_appender):
    app = _diamond(make_appender)
    items = list(app.stream({"results": ["input"]}))
    *events, last = items
    assert isinstance(last, RunCompleted)
    assert last.state == app.invoke({"results": ["input"]})
    assert last.state["results"] == ["input", "start", "a", "a2", "b", "join"]
    assert all(isinstance(ev, NodeEvent) for ev in events)
    assert sorted(ev.node for ev in _by_kind(events, EventKind.COMPLETED)) == [
        "a",
        "a2",
        "b",
        "join",
        "start",
    ]
    assert len(_by_kind(events, EventKind.STARTED)) == 5


def test_stream_delivers_events_while_the_run_is_in_progress():
    app = (
        StateGraph()
        .add_node("first", lambda s: {"x": 1})
        .add_node("slow", lambda s: time.sleep(0.3) or {"y": 1})
        .add_edge("first", "slow")
        .set_entry_point("first")
        .compile()
    )
    t0 = time.monotonic()
    arrivals = []
    for item in app.stream({}):
        arrivals.append((time.monotonic() - t0, item))
    first_completed = next(
        t for t, item in arrivals if isinstance(item, NodeEvent) and item.node == "first"
    )
    assert first_completed < 0.2
    assert isinstance(arrivals[-1][1], RunCompleted)
    assert arrivals[-1][0] >= 0.28


def test_stream_raises_node_errors():
    def bad(state):
        raise ValueError("nope")

    app = StateGraph().add_node("bad", bad).set_entry_point("bad").compile()
    with pytest.raises(NodeError):
        list(app.stream({}))


def test_astream_yields_events_then_run_completed(make_async_appender):
    app = (
        StateGraph(state_reducers={"results": "extend"})
        .add_node("start", lambda s: Command(goto=["a", "b"]))
        .add_node("a", make_async_appender("a", delay=0.03))
        .add_node("b", make_async_appender("b"))
        .set_entry_point("start")
        .compile()
    )

    async def collect():
        return [item async for item in app.astream({})]

    *events, last = asyncio.run(collect())
    assert isinstance(last, RunCompleted)
    assert last.state == {"results": ["a", "b"]}
    completed = _by_kind(events, EventKind.COMPLETED)
    assert sorted(ev.node for ev in completed) == ["a", "b", "start"]
    assert all(isinstance(ev, NodeEvent) for ev in events)
