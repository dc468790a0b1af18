"""``interrupt()``: nodes that wait for a value, and runs resumed from their journal."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

import pytest

from graphflow import (
    Command,
    EventKind,
    GraphFlowError,
    NodeEvent,
    NodeRecord,
    RetryPolicy,
    RunCompleted,
    RunInterrupted,
    Send,
    StateGraph,
    interrupt,
)


def approval_graph(calls: Counter[str]) -> StateGraph:
    """draft -> (approve, side) -> join: approve waits for a person, side does not."""

    def draft(state: dict[str, Any]) -> dict[str, Any]:
        calls["draft"] += 1
        return {"draft": "v1"}

    def approve(state: dict[str, Any]) -> dict[str, Any]:
        calls["approve before"] += 1
        answer = interrupt({"question": "publish?", "draft": state["draft"]})
        calls["approve after"] += 1
        return {"approved": answer}

    def side(state: dict[str, Any]) -> dict[str, Any]:
        calls["side"] += 1
        return {"log": ["side"]}

    def join(state: dict[str, Any]) -> dict[str, Any]:
        calls["join"] += 1
        return {"done": sorted(state)}

    graph = StateGraph(state_reducers={"log": "extend"})
    for name, fn in (("draft", draft), ("approve", approve), ("side", side), ("join", join)):
        graph.add_node(name, fn)
    graph.add_edge("draft", "approve").add_edge("draft", "side")
    graph.add_edge("approve", "join").add_edge("side", "join")
    return graph.set_entry_point("draft")


def test_interrupt_pauses_then_resume_reruns_the_node_from_its_start():
    calls: Counter[str] = Counter()
    app = approval_graph(calls).compile()
    with pytest.raises(RunInterrupted) as paused:
        app.invoke({})
    (waiting,) = paused.value.interrupts
    assert waiting.node == "approve"
    assert waiting.id == waiting.node_run_id
    assert waiting.payload == {"question": "publish?", "draft": "v1"}
    # The branch that does not wait ran; the join below the waiting node did not.
    assert calls == Counter({"draft": 1, "approve before": 1, "side": 1})
    assert {r.node for r in paused.value.journal} == {"draft", "side"}

    out = app.invoke({}, journal=paused.value.journal, resume={waiting.id: "yes"})
    assert out["approved"] == "yes"
    assert out["log"] == ["side"]
    assert out["done"] == ["approved", "draft", "log"]
    # Replayed nodes did not run again; the code before interrupt() ran twice.
    assert calls == Counter(
        {"draft": 1, "side": 1, "approve before": 2, "approve after": 1, "join": 1}
    )


def test_resume_with_a_journal_that_went_through_json():
    app = approval_graph(Counter()).compile()
    with pytest.raises(RunInterrupted) as paused:
        app.invoke({})
    stored = [NodeRecord.from_dict(r.to_dict()) for r in paused.value.journal]
    out = app.invoke({}, journal=stored, resume={paused.value.interrupts[0].id: False})
    assert out["approved"] is False


def parallel_questions(asked: Counter[str]) -> StateGraph:
    def start(state: dict[str, Any]) -> None:
        return None

    def ask(name: str) -> Any:
        def node(state: dict[str, Any]) -> dict[str, Any]:
            asked[name] += 1
            return {"answers": [(name, interrupt(f"{name}?"))]}

        return node

    graph = StateGraph(state_reducers={"answers": "extend"})
    graph.add_node("start", start)
    for name in ("legal", "finance"):
        graph.add_node(name, ask(name))
        graph.add_edge("start", name)
        graph.add_edge(name, "end")
    graph.add_node("end", lambda s: {"count": len(s["answers"])})
    return graph.set_entry_point("start")


def test_two_parallel_interrupts_get_their_own_values_one_at_a_time():
    asked: Counter[str] = Counter()
    app = parallel_questions(asked).compile()
    with pytest.raises(RunInterrupted) as first:
        app.invoke({})
    assert [i.node for i in first.value.interrupts] == ["legal", "finance"]
    assert [i.payload for i in first.value.interrupts] == ["legal?", "finance?"]
    legal, finance = first.value.interrupts

    # Answer one: the other asks again, with the same id.
    with pytest.raises(RunInterrupted) as second:
        app.invoke({}, journal=first.value.journal, resume={legal.id: "ok"})
    assert [i.id for i in second.value.interrupts] == [finance.id]
    assert second.value.resume == {legal.id: "ok"}
    assert [r.node for r in second.value.journal if r.node == "legal"] == ["legal"]

    out = app.invoke(
        {}, journal=second.value.journal, resume={**second.value.resume, finance.id: 42}
    )
    assert out["answers"] == [("legal", "ok"), ("finance", 42)]
    assert out["count"] == 2
    assert asked == Counter({"legal": 2, "finance": 3})


def test_several_interrupts_in_one_node_are_told_apart_by_order():
    def form(state: dict[str, Any]) -> dict[str, Any]:
        name = interrupt("name?")
        age = interrupt("age?")
        return {"person": (name, age)}

    app = StateGraph().add_node("form", form).set_entry_point("form").compile()
    with pytest.raises(RunInterrupted) as first:
        app.invoke({})
    (asked,) = first.value.interrupts
    assert (asked.id, asked.payload) == ("0", "name?")
    with pytest.raises(RunInterrupted) as second:
        app.invoke({}, resume={asked.id: "Ada"})
    (asked_again,) = second.value.interrupts
    assert (asked_again.id, asked_again.node_run_id, asked_again.payload) == ("0#1", "0", "age?")
    out = app.invoke({}, resume={**second.value.resume, asked_again.id: 36})
    assert out["person"] == ("Ada", 36)


def test_interrupt_in_a_loop_asks_once_per_wave():
    def model(state: dict[str, Any]) -> Command:
        turn = state.get("turn", 0)
        if turn == 3:
            return Command(goto=[])
        return Command(update={"turn": turn + 1}, goto=["review", "tool"])

    def review(state: dict[str, Any]) -> dict[str, Any]:
        return {"verdicts": [interrupt({"turn": state["turn"]})]}

    graph = StateGraph(state_reducers={"verdicts": "extend", "tools": "extend"})
    graph.add_node("model", model, destinations=["review", "tool"])
    graph.add_node("review", review)
    graph.add_node("tool", lambda s: {"tools": [s["turn"]]})
    graph.add_edge("review", "model").add_edge("tool", "model")
    app = graph.set_entry_point("model").compile()

    journal: list[NodeRecord] = []
    resume: dict[str, Any] = {}
    asked = []
    for _ in range(3):
        with pytest.raises(RunInterrupted) as paused:
            app.invoke({}, journal=journal, resume=resume)
        (waiting,) = paused.value.interrupts
        asked.append(waiting.payload["turn"])
        journal, resume = paused.value.journal, {**paused.value.resume, waiting.id: "ok"}
    out = app.invoke({}, journal=journal, resume=resume)
    assert asked == [1, 2, 3]
    assert out["verdicts"] == ["ok"] * 3
    assert out["tools"] == [1, 2, 3]
    assert len(set(resume)) == 3  # each wave's node run has its own id


def test_interrupts_in_a_send_map_wait_per_item():
    def fan(state: dict[str, Any]) -> Command:
        return Command(goto=[Send("check", {"item": i}) for i in range(4)])

    def check(payload: dict[str, Any]) -> dict[str, Any]:
        return {"checked": [(payload["item"], interrupt(payload["item"]))]}

    graph = StateGraph(state_reducers={"checked": "extend"})
    graph.add_node("fan", fan, destinations=["check"])
    graph.add_node("check", check)
    app = graph.set_entry_point("fan").compile()
    with pytest.raises(RunInterrupted) as paused:
        app.invoke({})
    items = paused.value.interrupts
    assert [i.payload for i in items] == [0, 1, 2, 3]
    assert len({i.id for i in items}) == 4
    out = app.invoke({}, journal=paused.value.journal, resume={i.id: i.payload * 10 for i in items})
    assert out["checked"] == [(0, 0), (1, 10), (2, 20), (3, 30)]


def test_parallel_branches_keep_running_until_nothing_else_can():
    finished = threading.Event()

    def slow(state: dict[str, Any]) -> dict[str, Any]:
        time.sleep(0.2)
        finished.set()
        return {"slow": True}

    graph = StateGraph()
    graph.add_node("start", lambda s: None)
    graph.add_node("wait", lambda s: {"answer": interrupt("?")})
    graph.add_node("slow", slow)
    graph.add_node("after_slow", lambda s: {"after": True})
    graph.add_edge("start", "wait").add_edge("start", "slow").add_edge("slow", "after_slow")
    app = graph.set_entry_point("start").compile()
    with pytest.raises(RunInterrupted) as paused:
        app.invoke({})
    assert finished.is_set()
    assert {r.node for r in paused.value.journal} == {"start", "slow", "after_slow"}


def test_async_and_threaded_nodes_can_interrupt():
    async def ask(state: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"a": interrupt("async?")}

    def ask_in_thread(state: dict[str, Any]) -> dict[str, Any]:
        return {"b": interrupt("thread?")}

    graph = StateGraph()
    graph.add_node("start", lambda s: None)
    graph.add_node("ask", ask)
    graph.add_node("ask_in_thread", ask_in_thread)
    graph.add_edge("start", "ask").add_edge("start", "ask_in_thread")
    app = graph.set_entry_point("start").compile()

    async def main() -> dict[str, Any]:
        try:
            await app.ainvoke({})
        except RunInterrupted as paused:
            values = {i.id: i.payload.upper() for i in paused.interrupts}
            return await app.ainvoke({}, journal=paused.journal, resume=values)
        raise AssertionError("the run was not interrupted")

    assert asyncio.run(main()) == {"a": "ASYNC?", "b": "THREAD?"}


def test_retry_policies_and_broad_excepts_do_not_swallow_an_interrupt():
    attempts = Counter[str]()

    def careful(state: dict[str, Any]) -> dict[str, Any]:
        attempts["careful"] += 1
        try:
            return {"answer": interrupt("?")}
        except Exception:  # a node's own error handling must not eat the pause
            return {"answer": "swallowed"}

    graph = StateGraph()
    graph.add_node("careful", careful, retry=RetryPolicy(max_attempts=5, initial_delay=0))
    app = graph.set_entry_point("careful").compile()
    with pytest.raises(RunInterrupted):
        app.invoke({})
    assert attempts["careful"] == 1


def test_stream_yields_the_interrupted_event_before_raising():
    app = approval_graph(Counter()).compile()
    events: list[NodeEvent] = []
    with pytest.raises(RunInterrupted):
        for item in app.stream({}):
            assert not isinstance(item, RunCompleted)
            events.append(item)
    interrupted = [e for e in events if e.kind is EventKind.INTERRUPTED]
    assert [e.node for e in interrupted] == ["approve"]
    assert interrupted[0].interrupt is not None
    assert interrupted[0].interrupt.payload["question"] == "publish?"


def test_a_failure_elsewhere_fails_the_run_rather_than_pausing_it():
    def boom(state: dict[str, Any]) -> None:
        raise ValueError("boom")

    graph = StateGraph()
    graph.add_node("start", lambda s: None)
    graph.add_node("wait", lambda s: {"x": interrupt("?")})
    graph.add_node("boom", boom)
    graph.add_edge("start", "wait").add_edge("start", "boom")
    with pytest.raises(GraphFlowError, match="boom"):
        graph.set_entry_point("start").compile().invoke({})


def test_interrupt_outside_a_node_run_says_where_to_call_it():
    with pytest.raises(GraphFlowError, match="outside a node run"):
        interrupt("?")
