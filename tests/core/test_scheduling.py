"""Scheduling: no superstep barrier, concurrency caps, sync/async mixing, loops, cancellation."""

from __future__ import annotations

import asyncio
import math
import threading
import time

import pytest

from graphflow_core import Command, RunCancelledError, StateGraph

# --- no superstep barrier ----------------------------------------------------------------


def _two_chains_into_join(make_appender, delays_a, delays_b, log=None):
    graph = StateGraph(state_reducers={"results": "extend"})
    graph.add_node("start", lambda s: Command(goto=["a1", "b1"]))
    for chain, delays in (("a", delays_a), ("b", delays_b)):
        for i, delay in enumerate(delays, start=1):
            graph.add_node(f"{chain}{i}", make_appender(f"{chain}{i}", delay=delay, log=log))
            if i > 1:
                graph.add_edge(f"{chain}{i - 1}", f"{chain}{i}")
        graph.add_edge(f"{chain}{len(delays)}", "join")
    graph.add_node("join", make_appender("join", log=log))
    return graph.set_entry_point("start").compile()


def test_chains_do_not_wait_for_each_other_at_every_step(make_appender):
    app = _two_chains_into_join(make_appender, [0.3, 0.1, 0.1], [0.1, 0.1, 0.3])
    t0 = time.monotonic()
    result = app.invoke({})
    elapsed = time.monotonic() - t0
    # Critical path is 0.5 s; a superstep barrier would make it 0.3 + 0.1 + 0.3 = 0.7 s.
    assert 0.45 < elapsed < 0.65, elapsed
    assert result["results"] == ["a1", "a2", "a3", "b1", "b2", "b3", "join"]


def test_fast_branch_successor_starts_before_slow_sibling_finishes(make_appender, call_log):
    app = (
        StateGraph(state_reducers={"results": "extend"})
        .add_node("start", lambda s: Command(goto=["slow", "fast"]))
        .add_node("slow", make_appender("slow", delay=0.4, log=call_log))
        .add_node("fast", make_appender("fast", delay=0.02, log=call_log))
        .add_node("fast2", make_appender("fast2", delay=0.02, log=call_log))
        .add_edge("fast", "fast2")
        .set_entry_point("start")
        .compile()
    )
    app.invoke({})
    assert call_log.started["fast2"][0] < call_log.ended["slow"][0]
    assert call_log.ended["fast2"][0] < call_log.ended["slow"][0]


def test_fan_out_of_64_blocking_sync_nodes_runs_them_all_at_once(make_appender):
    names = [f"w{i}" for i in range(64)]
    graph = StateGraph(state_reducers={"results": "extend"})
    graph.add_node("start", lambda s: Command(goto=names))
    for name in names:
        graph.add_node(name, make_appender(name, delay=0.2))
    app = graph.set_entry_point("start").compile()
    t0 = time.monotonic()
    result = app.invoke({})
    elapsed = time.monotonic() - t0
    assert elapsed < 0.6, elapsed
    assert result["results"] == names


# --- concurrency caps --------------------------------------------------------------------


def _ten_sleepers(make_appender, probe, delay, **compile_kwargs):
    names = [f"n{i}" for i in range(10)]
    graph = StateGraph(state_reducers={"results": "extend"})
    graph.add_node("start", lambda s: Command(goto=names))
    for name in names:
        graph.add_node(name, make_appender(name, delay=delay, probe=probe))
    return graph.set_entry_point("start").compile(**compile_kwargs), names


def test_max_concurrent_caps_running_nodes(make_appender, probe):
    delay = 0.15
    app, names = _ten_sleepers(make_appender, probe, delay, max_concurrent=3)
    t0 = time.monotonic()
    result = app.invoke({})
    elapsed = time.monotonic() - t0
    assert probe.max_seen == 3
    waves = math.ceil(10 / 3)
    assert waves * delay * 0.95 < elapsed < waves * delay + 0.3, elapsed
    assert result["results"] == names


def test_max_concurrent_can_be_set_per_invoke(make_appender, probe):
    app, _ = _ten_sleepers(make_appender, probe, 0.05)
    app.invoke({}, max_concurrent=2)
    assert probe.max_seen == 2


def test_sequential_engine_runs_one_node_at_a_time(make_appender, probe):
    app, names = _ten_sleepers(make_appender, probe, 0.02, use_parallel_engine=False)
    result = app.invoke({})
    assert probe.max_seen == 1
    assert result["results"] == names


def test_uncapped_engine_runs_sleepers_concurrently(make_appender, probe):
    app, _ = _ten_sleepers(make_appender, probe, 0.15)
    app.invoke({})
    assert probe.max_seen == 10


# --- async and sync nodes ----------------------------------------------------------------


def test_async_nodes_run_and_their_results_merge(make_async_appender):
    app = (
        StateGraph(state_reducers={"results": "extend"})
        .add_node("start", lambda s: Command(goto=["a", "b"]))
        .add_node("a", make_async_appender("a", delay=0.05))
        .add_node("b", make_async_appender("b"))
        .add_node("join", make_async_appender("join"))
        .add_edge("a", "join")
        .add_edge("b", "join")
        .set_entry_point("start")
        .compile()
    )
    assert app.invoke({})["results"] == ["a", "b", "join"]
    assert asyncio.run(app.ainvoke({}))["results"] == ["a", "b", "join"]


def test_async_nodes_run_concurrently(make_async_appender):
    names = [f"a{i}" for i in range(20)]
    graph = StateGraph(state_reducers={"results": "extend"})
    graph.add_node("start", lambda s: Command(goto=names))
    for name in names:
        graph.add_node(name, make_async_appender(name, delay=0.2))
    app = graph.set_entry_point("start").compile()
    t0 = time.monotonic()
    app.invoke({})
    assert time.monotonic() - t0 < 0.5


def _blocking_and_async_pair():
    ticks: list[float] = []

    def blocking(state):
        time.sleep(0.3)
        return {"blocking_done": time.monotonic()}

    async def cooperative(state):
        for _ in range(3):
            await asyncio.sleep(0.1)
            ticks.append(time.monotonic())
        return {"ticks": len(ticks)}

    app = (
        StateGraph()
        .add_node("start", lambda s: Command(goto=["blocking", "cooperative"]))
        .add_node("blocking", blocking)
        .add_node("cooperative", cooperative)
        .set_entry_point("start")
        .compile()
    )
    return app, ticks


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
def test_blocking_sync_node_does_not_block_async_nodes(mode):
    app, ticks = _blocking_and_async_pair()
    t0 = time.monotonic()
    if mode == "invoke":
        result = app.invoke({})
    else:
        result = asyncio.run(app.ainvoke({}))
    elapsed = time.monotonic() - t0
    assert result["ticks"] == 3
    # Interleaved: ~0.3 s. Serialised behind the blocking sleep: ~0.6 s.
    assert elapsed < 0.48, elapsed
    # The async node made progress while the sync node was still sleeping.
    assert ticks[0] < result["blocking_done"]


def test_ainvoke_does_not_block_the_callers_event_loop():
    app = (
        StateGraph()
        .add_node("blocking", lambda s: time.sleep(0.3) or {"done": True})
        .set_entry_point("blocking")
        .compile()
    )
    ticks: list[float] = []

    async def ticker(stop):
        while not stop.is_set():
            ticks.append(time.monotonic())
            await asyncio.sleep(0.02)

    async def main():
        stop = asyncio.Event()
        task = asyncio.create_task(ticker(stop))
        result = await app.ainvoke({})
        stop.set()
        await task
        return result

    assert asyncio.run(main()) == {"done": True}
    assert len(ticks) >= 5


# --- loops -------------------------------------------------------------------------------


def test_node_can_loop_on_itself_until_done():
    def count(state):
        n = state.get("count", 0) + 1
        return Command(update={"count": n}, goto="count" if n < 5 else ())

    app = StateGraph().add_node("count", count).set_entry_point("count").compile()
    assert app.invoke({}) == {"count": 5}


def test_goto_back_to_an_earlier_node_loops():
    def step(state):
        return {"count": state.get("count", 0) + 1, "trail": [state.get("count", 0)]}

    def check(state):
        return Command(goto="step" if state["count"] < 5 else "done")

    app = (
        StateGraph(state_reducers={"trail": "extend"})
        .add_node("step", step)
        .add_node("check", check)
        .add_node("done", lambda s: {"finished": True})
        .add_edge("step", "check")
        .set_entry_point("step")
        .compile()
    )
    assert app.invoke({}) == {"count": 5, "trail": [0, 1, 2, 3, 4], "finished": True}


@pytest.mark.timeout(15)
def test_two_nodes_that_goto_each_other_do_not_deadlock():
    def ping(state):
        n = state["n"] + 1
        return Command(update={"n": n, "log": ["ping"]}, goto="pong" if n < 6 else ())

    def pong(state):
        n = state["n"] + 1
        return Command(update={"n": n, "log": ["pong"]}, goto="ping" if n < 6 else ())

    app = (
        StateGraph(state_reducers={"log": "extend"})
        .add_node("ping", ping)
        .add_node("pong", pong)
        .set_entry_point("ping")
        .compile()
    )
    assert app.invoke({"n": 0}) == {"n": 6, "log": ["ping", "pong"] * 3}


@pytest.mark.timeout(15)
def test_node_with_static_back_edge_in_a_cycle_does_not_deadlock():
    # `hub` has two static predecessors: the entry and `body`, which is downstream of hub.
    def hub(state):
        n = state.get("n", 0) + 1
        return Command(update={"n": n}, goto="body" if n < 3 else ())

    app = (
        StateGraph(state_reducers={"visits": "extend"})
        .add_node("entry", lambda s: {"visits": ["entry"]})
        .add_node("hub", hub)
        .add_node("body", lambda s: {"visits": ["body"]})
        .add_edge("entry", "hub")
        .add_edge("body", "hub")
        .set_entry_point("entry")
        .compile()
    )
    assert app.invoke({}) == {"n": 3, "visits": ["entry", "body", "body"]}


@pytest.mark.timeout(15)
def test_fan_out_inside_a_loop_joins_every_round():
    def start(state):
        return Command(update={"round": state.get("round", 0) + 1}, goto=["x", "y"])

    def join(state):
        return Command(
            update={"joined": [state["round"]]}, goto="start" if state["round"] < 4 else ()
        )

    app = (
        StateGraph(state_reducers={"joined": "extend", "work": "extend"})
        .add_node("start", start)
        .add_node("x", lambda s: time.sleep(0.01) or {"work": ["x"]})
        .add_node("y", lambda s: {"work": ["y"]})
        .add_node("join", join)
        .add_edge("x", "join")
        .add_edge("y", "join")
        .set_entry_point("start")
        .compile()
    )
    result = app.invoke({})
    assert result["joined"] == [1, 2, 3, 4]
    assert result["work"] == ["x", "y"] * 4


# --- cancellation ------------------------------------------------------------------------


def test_cancel_set_by_a_node_stops_the_run_before_anything_new_starts(call_log, make_appender):
    cancel = threading.Event()

    def first(state):
        cancel.set()
        return {"results": ["first"]}

    app = (
        StateGraph(state_reducers={"results": "extend"})
        .add_node("first", first)
        .add_node("second", make_appender("second", log=call_log))
        .add_edge("first", "second")
        .set_entry_point("first")
        .compile()
    )
    with pytest.raises(RunCancelledError) as info:
        app.invoke({}, cancel=cancel)
    assert call_log.counts["second"] == 0
    assert [record.node for record in info.value.completed] == ["first"]
    assert info.value.completed[0].update == {"results": ["first"]}


def test_cancel_from_another_thread_lets_running_nodes_finish_and_starts_nothing_new(
    call_log, make_appender, collected_events
):
    events, on_event = collected_events
    cancel = threading.Event()
    app = (
        StateGraph(state_reducers={"results": "extend"})
        .add_node("start", lambda s: Command(goto=["slow", "quick"]))
        .add_node("slow", make_appender("slow", delay=0.3, log=call_log))
        .add_node("quick", make_appender("quick", log=call_log))
        .add_node("after_slow", make_appender("after_slow", log=call_log))
        .add_node("after_quick", make_appender("after_quick", delay=0.3, log=call_log))
        .add_node("later", make_appender("later", log=call_log))
        .add_edge("slow", "after_slow")
        .add_edge("quick", "after_quick")
        .add_edge("after_quick", "later")
        .set_entry_point("start")
        .compile()
    )
    timer = threading.Timer(0.1, cancel.set)
    timer.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(RunCancelledError) as info:
            app.invoke({}, cancel=cancel, on_event=on_event)
        elapsed = time.monotonic() - t0
    finally:
        timer.cancel()
    # The nodes that were running when cancel was set finished and were recorded ...
    completed = {ev.node for ev in events if ev.kind == "completed"}
    assert {"slow", "after_quick"} <= completed
    assert {"slow", "after_quick", "start", "quick"} <= {r.node for r in info.value.completed}
    # ... but nothing started after the cancel.
    assert call_log.counts["after_slow"] == 0
    assert call_log.counts["later"] == 0
    assert elapsed < 0.6


def test_many_concurrent_ainvokes_of_a_sync_graph_do_not_queue_behind_each_other():
    # asyncio.to_thread's default executor has a handful of threads; 40 runs would queue.
    app = (
        StateGraph()
        .add_node("slow", lambda s: time.sleep(0.2) or {"done": s["i"]})
        .set_entry_point("slow")
        .compile()
    )

    async def main():
        return await asyncio.gather(*(app.ainvoke({"i": i}) for i in range(40)))

    t0 = time.monotonic()
    results = asyncio.run(main())
    assert time.monotonic() - t0 < 0.8
    assert [r["done"] for r in results] == list(range(40))
