"""One compiled graph, many concurrent callers: no cross-talk, inputs never mutated."""

from __future__ import annotations

import asyncio
import copy
import random
import threading
from concurrent.futures import ThreadPoolExecutor

from graphflow_core import Command, StateGraph


def _tagging_app():
    """Every node derives its output from the caller's input, so cross-talk is visible."""

    def start(state):
        return Command(update={"trace": [f"start:{state['tag']}"]}, goto=["left", "right"])

    def branch(name):
        def node(state):
            threading.Event().wait(random.uniform(0, 0.02))
            return {"trace": [f"{name}:{state['tag']}"], f"{name}_value": state["value"] * 2}

        return node

    async def join(state):
        await asyncio.sleep(random.uniform(0, 0.01))
        return {"total": state["left_value"] + state["right_value"], "echo": state["tag"]}

    return (
        StateGraph(state_reducers={"trace": "extend"})
        .add_node("start", start)
        .add_node("left", branch("left"))
        .add_node("right", branch("right"))
        .add_node("join", join)
        .add_edge("left", "join")
        .add_edge("right", "join")
        .set_entry_point("start")
        .compile()
    )


def _expected(i):
    tag = f"caller-{i}"
    return {
        "tag": tag,
        "value": i,
        "trace": [f"start:{tag}", f"left:{tag}", f"right:{tag}"],
        "left_value": 2 * i,
        "right_value": 2 * i,
        "total": 4 * i,
        "echo": tag,
    }


def _input(i):
    return {"tag": f"caller-{i}", "value": i}


def test_one_app_invoked_from_eight_threads_at_once_has_no_cross_talk():
    app = _tagging_app()
    barrier = threading.Barrier(8)

    def call(i):
        barrier.wait()
        return [app.invoke(_input(i)) for _ in range(3)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(call, range(8)))
    for i, runs in enumerate(results):
        for result in runs:
            assert result == _expected(i)


def test_gathered_ainvokes_on_one_loop_have_no_cross_talk():
    app = _tagging_app()

    async def main():
        return await asyncio.gather(*(app.ainvoke(_input(i)) for i in range(16)))

    for i, result in enumerate(asyncio.run(main())):
        assert result == _expected(i)


def test_several_event_loops_in_parallel_threads_share_one_app():
    app = _tagging_app()

    def run_loop(offset):
        async def main():
            return await asyncio.gather(*(app.ainvoke(_input(offset + i)) for i in range(4)))

        return asyncio.run(main())

    with ThreadPoolExecutor(max_workers=4) as pool:
        batches = list(pool.map(run_loop, [0, 10, 20, 30]))
    for offset, batch in zip([0, 10, 20, 30], batches, strict=True):
        for i, result in enumerate(batch):
            assert result == _expected(offset + i)


def test_sequential_asyncio_run_calls_reuse_one_app():
    app = _tagging_app()
    for i in range(3):
        assert asyncio.run(app.ainvoke(_input(i))) == _expected(i)
    assert app.invoke(_input(9)) == _expected(9)


def test_invoke_never_mutates_its_input():
    app = (
        StateGraph(state_reducers={"items": "extend", "meta": "merge"})
        .add_node(
            "start",
            lambda s: Command(update={"items": ["s"], "meta": {"s": 1}}, goto=["a", "b"]),
        )
        .add_node("a", lambda s: {"items": ["a"], "meta": {"a": 1}, "nested": {"x": [1]}})
        .add_node("b", lambda s: {"items": ["b"], "meta": {"shared": "b"}})
        .set_entry_point("start")
        .compile()
    )
    state = {
        "items": ["input"],
        "meta": {"shared": "input", "deep": {"k": [1, 2]}},
        "nested": {"x": [0]},
        "untouched": [{"a": 1}],
    }
    before = copy.deepcopy(state)
    result = app.invoke(state)
    assert state == before
    assert result["items"] == ["input", "s", "a", "b"]
    assert result["meta"] == {"shared": "b", "deep": {"k": [1, 2]}, "s": 1, "a": 1}

    # Mutating the result must not reach back into the caller's input either.
    result["items"].append("mutated")
    result["meta"]["shared"] = "mutated"
    assert state == before

    async_result = asyncio.run(app.ainvoke(state))
    assert state == before
    assert async_result["items"] == ["input", "s", "a", "b"]
