"""Graphs of the durability tests (registered via ``GRAPHFLOW_WORKFLOWS``).

Every node appends ``<tag> <node> <pid>`` to the file named by ``GRAPHFLOW_TEST_COUNTER`` (when
set) just before it returns, opened with ``O_APPEND`` so lines of concurrent writers and of a
killed process never interleave. The file lives outside the server, so it survives ``kill -9``
and tells the tests which node runs really ran, how often and in which process.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from pydantic import BaseModel, Field

from graphflow_core import StateGraph, interrupt
from service.runtime.registry import workflow

COUNTER_ENV = "GRAPHFLOW_TEST_COUNTER"
BRANCHES = [f"b{i:02d}" for i in range(18)]
CHAIN = [f"c{i:02d}" for i in range(12)]


def count_completion(tag: str, node: str) -> None:
    """Append one completion line to the counter file, if the process was given one."""
    path = os.environ.get(COUNTER_ENV)
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{tag} {node} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


class FanOutInput(BaseModel):
    tag: str = Field(max_length=100)
    delay: float = Field(0.05, ge=0, le=2)


def _fan_node(name: str, weight: int) -> Any:
    def node(state: dict[str, Any]) -> dict[str, Any]:
        time.sleep(state["delay"] * weight)
        count_completion(state["tag"], name)
        return {"results": [f"{name}:{len(name) * weight}"]}

    return node


def _join(state: dict[str, Any]) -> dict[str, Any]:
    time.sleep(state["delay"])
    count_completion(state["tag"], "join")
    total = sum(int(r.split(":")[1]) for r in state["results"])
    return {"count": len(state["results"]), "total": total}


@workflow(
    "fan_out_20",
    description="start -> 18 parallel branches -> join: 20 nodes, each sleeping 1-3 x delay.",
    input_model=FanOutInput,
)
def fan_out_20() -> StateGraph:
    g = StateGraph({"results": "extend"})
    g.add_node("start", _fan_node("start", 1)).set_entry_point("start")
    g.add_node("join", _join)
    for i, name in enumerate(BRANCHES):
        g.add_node(name, _fan_node(name, 1 + i % 3))
        g.add_edge("start", name).add_edge(name, "join")
    return g


class ChainInput(BaseModel):
    tag: str = Field(max_length=100)
    delay: float = Field(0.1, ge=0, le=5)
    slow: dict[str, float] = Field(default_factory=dict)  # per-node delays overriding `delay`


def _chain_node(name: str) -> Any:
    def node(state: dict[str, Any]) -> dict[str, Any]:
        time.sleep(state.get("slow", {}).get(name, state.get("delay", 0.1)))
        count_completion(state["tag"], name)
        return {"trace": [name]}

    return node


@workflow("steady_chain", description="Twelve nodes in a chain, each sleeping `delay` s.")
def steady_chain() -> StateGraph:
    g = StateGraph({"trace": "extend"})
    for name in CHAIN:
        g.add_node(name, _chain_node(name))
    for src, dst in zip(CHAIN, CHAIN[1:], strict=False):
        g.add_edge(src, dst)
    return g.set_entry_point(CHAIN[0])


class PoisonInput(BaseModel):
    tag: str = Field(max_length=100)
    fuse: float = Field(0.4, ge=0, le=5)


def _prepare(state: dict[str, Any]) -> dict[str, Any]:
    count_completion(state["tag"], "prepare")
    return {"prepared": True}


def _poison(state: dict[str, Any]) -> dict[str, Any]:
    # Work a little first, so that runs sharing the process get somewhere before it dies.
    time.sleep(state["fuse"])
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable: the process is gone")


@workflow("poison_pill", description="prepare -> poison (SIGKILLs its own process) -> never.")
def poison_pill() -> StateGraph:
    g = StateGraph()
    g.add_node("prepare", _prepare).add_node("poison", _poison)
    g.add_node("never", _chain_node("never"))
    g.add_edge("prepare", "poison").add_edge("poison", "never")
    return g.set_entry_point("prepare")


TEN_STEPS = [f"n{i:02d}" for i in range(1, 11)]


class TenStepsInput(BaseModel):
    tag: str = Field(max_length=100)
    # Node n07 fails while this file exists: delete it, then retry the run.
    fail_flag: str = Field(max_length=1000)


def _step(name: str) -> Any:
    def node(state: dict[str, Any]) -> dict[str, Any]:
        if name == "n07" and os.path.exists(state["fail_flag"]):
            raise RuntimeError(f"{name} failed: {state['fail_flag']} exists")
        count_completion(state["tag"], name)
        return {"trace": [name]}

    return node


@workflow(
    "ten_steps",
    description="n01 -> ... -> n10; n07 fails while `fail_flag` exists.",
    input_model=TenStepsInput,
)
def ten_steps() -> StateGraph:
    g = StateGraph({"trace": "extend"})
    for name in TEN_STEPS:
        g.add_node(name, _step(name))
    for src, dst in zip(TEN_STEPS, TEN_STEPS[1:], strict=False):
        g.add_edge(src, dst)
    return g.set_entry_point(TEN_STEPS[0])


class AskInput(BaseModel):
    tag: str = Field(max_length=100)
    delay: float = Field(0.0, ge=0, le=2)


def _asker(name: str) -> Any:
    def node(state: dict[str, Any]) -> dict[str, Any]:
        count_completion(state["tag"], f"{name}-asked")  # before interrupt(): runs again
        answer = interrupt({"question": f"{name}?"})
        count_completion(state["tag"], name)
        return {"answers": {name: answer}}

    return node


def _collect(state: dict[str, Any]) -> dict[str, Any]:
    count_completion(state["tag"], "collect")
    return {"done": sorted(state.get("answers", {}))}


@workflow(
    "two_questions",
    description="start -> (legal, finance: each waits for a person) -> collect.",
    input_model=AskInput,
)
def two_questions() -> StateGraph:
    g = StateGraph({"answers": "merge"})
    g.add_node("start", _fan_node("start", 0)).set_entry_point("start")
    g.add_node("collect", _collect)
    for name in ("legal", "finance"):
        g.add_node(name, _asker(name))
        g.add_edge("start", name).add_edge(name, "collect")
    return g


# The shape of ``shifting_chain`` is chosen by the environment when the graphs are compiled, so
# that two servers on one database can load two versions of one graph.
SHAPE_ENV = "GRAPHFLOW_TEST_SHAPE"
SHAPES = {"short": ["v1", "v2", "v3", "v4"], "long": ["v1", "v2", "v3", "v4", "v5"]}


def shifting_nodes() -> list[str]:
    """The nodes of ``shifting_chain`` in this process: ``GRAPHFLOW_TEST_SHAPE`` (default
    ``short``)."""
    return SHAPES[os.environ.get(SHAPE_ENV, "short")]


def _shifting_chain() -> StateGraph:
    names = shifting_nodes()
    g = StateGraph({"trace": "extend"})
    for name in names:
        g.add_node(name, _chain_node(name))
    for src, dst in zip(names, names[1:], strict=False):
        g.add_edge(src, dst)
    return g.set_entry_point(names[0])


@workflow(
    "shifting_chain",
    description="v1 -> ... -> v4, or -> v5 with GRAPHFLOW_TEST_SHAPE=long; each sleeps `delay` s.",
    input_model=ChainInput,
)
def shifting_chain() -> StateGraph:
    return _shifting_chain()


@workflow(
    "shifting_chain_resumable",
    description="shifting_chain, whose runs resume on a changed shape.",
    input_model=ChainInput,
    on_version_change="resume",
)
def shifting_chain_resumable() -> StateGraph:
    return _shifting_chain()
