"""Engine benchmark: the same scenarios on GraphFlow and, when installed, on LangGraph.

Run: ``python bench/engine_bench.py`` (``pip install -e '.[bench]'`` for the LangGraph column).
Prints µs per node (min over repeats, gc off) and GraphFlow's speed-up over LangGraph.
"""

from __future__ import annotations

import argparse
import gc
import operator
import time
import tracemalloc
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

from graphflow_core import Command, Send, StateGraph


def _noop(state: dict[str, Any]) -> dict[str, Any]:
    return {"count": 1}


def _append(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def node(state: dict[str, Any]) -> dict[str, Any]:
        return {"items": [name]}

    return node


def _sleeper(name: str, seconds: float) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def node(state: dict[str, Any]) -> dict[str, Any]:
        time.sleep(seconds)
        return {"items": [name]}

    return node


# -- GraphFlow scenarios -------------------------------------------------------------------


def gf_chain(n: int) -> Callable[[], object]:
    graph = StateGraph()
    for i in range(n):
        graph.add_node(f"n{i}", _noop)
        if i:
            graph.add_edge(f"n{i - 1}", f"n{i}")
    app = graph.set_entry_point("n0").compile()
    return lambda: app.invoke({})


def gf_fanout(n: int) -> Callable[[], object]:
    graph = StateGraph({"items": "extend"})
    graph.add_node("start", lambda s: None)
    for i in range(n):
        graph.add_node(f"w{i}", _append(f"w{i}")).add_edge("start", f"w{i}")
        graph.add_edge(f"w{i}", "join")
    app = graph.add_node("join", _noop).set_entry_point("start").compile()
    return lambda: app.invoke({})


def gf_map(n: int) -> Callable[[], object]:
    graph = StateGraph({"items": "extend"})
    graph.add_node("start", lambda s: Command(goto=[Send("work", i) for i in range(n)]))
    graph.add_node("work", lambda item: {"items": [item * 2]}).add_edge("work", "join")
    app = graph.add_node("join", _noop).set_entry_point("start").compile()
    return lambda: app.invoke({})


def _agent_model(turns: int, tools: list[str], command: Any, end: Any) -> Any:
    def model(state: dict[str, Any]) -> Any:
        turn = state.get("turn", 0)
        if turn == turns:
            return command(goto=end)
        return command(update={"turn": turn + 1}, goto=tools)

    return model


def agent_loop_size(turns: int, tools: int) -> int:
    """Node runs of an agent loop: one model run per turn and the last, plus the tools."""
    return turns + 1 + turns * tools


def gf_agent_loop(turns: int, tools: int) -> Callable[[], object]:
    names = [f"t{i}" for i in range(tools)]
    graph = StateGraph(state_reducers={"items": "extend"})
    graph.add_node("model", _agent_model(turns, names, Command, []), destinations=names)
    for name in names:
        graph.add_node(name, _append(name)).add_edge(name, "model")
    app = graph.set_entry_point("model").compile()
    return lambda: app.invoke({})


def gf_sleeping(branches: dict[str, list[float]]) -> Callable[[], object]:
    graph = StateGraph({"items": "extend"})
    graph.add_node("start", lambda s: None)
    for name, sleeps in branches.items():
        previous = "start"
        for i, seconds in enumerate(sleeps):
            node = f"{name}{i}"
            graph.add_node(node, _sleeper(node, seconds)).add_edge(previous, node)
            previous = node
        graph.add_edge(previous, "join")
    app = graph.add_node("join", _noop).set_entry_point("start").compile()
    return lambda: app.invoke({})


# -- LangGraph scenarios (same shapes) ----------------------------------------------------


def lg_scenarios() -> dict[str, Callable[..., Callable[[], object]]] | None:
    try:
        from langgraph.graph import END, START
        from langgraph.graph import StateGraph as LGStateGraph
        from langgraph.types import Command as LGCommand
        from langgraph.types import Send as LGSend
    except ImportError:
        return None

    class State(TypedDict, total=False):
        count: int
        turn: int
        items: Annotated[list[Any], operator.add]

    def chain(n: int) -> Callable[[], object]:
        graph = LGStateGraph(State)
        for i in range(n):
            graph.add_node(f"n{i}", _noop)
            graph.add_edge(START if i == 0 else f"n{i - 1}", f"n{i}")
        graph.add_edge(f"n{n - 1}", END)
        app = graph.compile()
        return lambda: app.invoke({}, {"recursion_limit": n + 10})

    def fanout(n: int) -> Callable[[], object]:
        graph = LGStateGraph(State)
        graph.add_node("start", lambda s: {})
        graph.add_edge(START, "start")
        for i in range(n):
            graph.add_node(f"w{i}", _append(f"w{i}"))
            graph.add_edge("start", f"w{i}")
        graph.add_node("join", _noop)
        graph.add_edge([f"w{i}" for i in range(n)], "join")
        graph.add_edge("join", END)
        app = graph.compile()
        return lambda: app.invoke({})

    def mapped(n: int) -> Callable[[], object]:
        graph = LGStateGraph(State)
        graph.add_node("start", lambda s: {})
        graph.add_edge(START, "start")
        graph.add_node("work", lambda item: {"items": [item * 2]})
        graph.add_conditional_edges("start", lambda s: [LGSend("work", i) for i in range(n)])
        graph.add_node("join", _noop)
        graph.add_edge("work", "join")
        graph.add_edge("join", END)
        app = graph.compile()
        return lambda: app.invoke({})

    def sleeping(branches: dict[str, list[float]]) -> Callable[[], object]:
        graph = LGStateGraph(State)
        graph.add_node("start", lambda s: {})
        graph.add_edge(START, "start")
        ends = []
        for name, sleeps in branches.items():
            previous = "start"
            for i, seconds in enumerate(sleeps):
                node = f"{name}{i}"
                graph.add_node(node, _sleeper(node, seconds))
                graph.add_edge(previous, node)
                previous = node
            ends.append(previous)
        graph.add_node("join", _noop)
        graph.add_edge(ends, "join")
        graph.add_edge("join", END)
        app = graph.compile()
        return lambda: app.invoke({})

    def agent_loop(turns: int, tools: int) -> Callable[[], object]:
        names = [f"t{i}" for i in range(tools)]
        graph = LGStateGraph(State)
        graph.add_node("model", _agent_model(turns, names, LGCommand, END))
        graph.add_edge(START, "model")
        for name in names:
            graph.add_node(name, _append(name))
            graph.add_edge(name, "model")
        app = graph.compile()
        return lambda: app.invoke({}, {"recursion_limit": 10_000})

    return {
        "chain": chain,
        "fanout": fanout,
        "map": mapped,
        "sleeping": sleeping,
        "agent_loop": agent_loop,
    }


def best_of(run: Callable[[], object], repeats: int) -> float:
    """Minimum wall time in seconds over ``repeats`` runs, with gc off."""
    run()  # warm up threads and caches
    times = []
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        finally:
            gc.enable()
    return min(times)


def bytes_per_node_run(n: int) -> float:
    """Peak traced memory of a map of ``n`` items, less its input and output, per node run."""
    run = gf_map(n)
    run()
    gc.collect()
    tracemalloc.start()
    result = run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    user_data = sum(
        len(v) * 8 + 28 * len(v) if isinstance(v, list) else 0
        for v in result.values()  # type: ignore[attr-defined]
    )
    return (peak - user_data) / n


PATTERN_1 = {"a": [0.3], "b": [0.5], "c": [0.2], "d": [0.4]}
UNEQUAL = {"a": [0.3, 0.1, 0.1], "b": [0.1, 0.1, 0.3]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    langgraph = lg_scenarios()
    rows: list[tuple[str, int, Callable[[], object], Callable[[], object] | None, str]] = [
        ("chain", 1000, gf_chain(1000), langgraph and langgraph["chain"](1000), "µs/node"),
        (
            "fan-out + join",
            1000,
            gf_fanout(1000),
            langgraph and langgraph["fanout"](1000),
            "µs/node",
        ),
        ("map (Send)", 1000, gf_map(1000), langgraph and langgraph["map"](1000), "µs/item"),
        ("map (Send)", 10000, gf_map(10000), langgraph and langgraph["map"](10000), "µs/item"),
        (
            "agent loop 20 turns x 5",
            agent_loop_size(20, 5),
            gf_agent_loop(20, 5),
            langgraph and langgraph["agent_loop"](20, 5),
            "µs/node",
        ),
        (
            "guide pattern 1 (sleeps)",
            1,
            gf_sleeping(PATTERN_1),
            langgraph and langgraph["sleeping"](PATTERN_1),
            "s/run",
        ),
        (
            "unequal chains 0.5 s path",
            1,
            gf_sleeping(UNEQUAL),
            langgraph and langgraph["sleeping"](UNEQUAL),
            "s/run",
        ),
    ]
    print(f"{'scenario':<28}{'size':>7}{'graphflow':>12}{'langgraph':>12}{'ratio':>8}  unit")
    for name, size, ours, theirs, unit in rows:
        repeats = args.repeats if unit != "s/run" else 2
        scale = 1e6 / size if unit != "s/run" else 1.0
        ours_value = best_of(ours, repeats) * scale
        if theirs is None:
            print(f"{name:<28}{size:>7}{ours_value:>12.2f}{'-':>12}{'-':>8}  {unit}")
            continue
        theirs_value = best_of(theirs, repeats) * scale
        ratio = theirs_value / ours_value
        print(f"{name:<28}{size:>7}{ours_value:>12.2f}{theirs_value:>12.2f}{ratio:>7.1f}x  {unit}")
    print(f"memory per node run (map of 10,000): {bytes_per_node_run(10000):.0f} bytes")


if __name__ == "__main__":
    main()
