"""Resuming from a journal of completed node runs; NodeRecord serialisation."""

from __future__ import annotations

import json
import threading

import pytest

from graphflow_core import Command, EventKind, NodeRecord, Send, StateGraph


class CountingGraph:
    """A graph whose node functions count their calls, so a resume can be checked."""

    def __init__(self):
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def count(self, name):
        with self._lock:
            self.calls[name] = self.calls.get(name, 0) + 1

    def build(self):
        """start → goto [a, b]; a → a2 → join; b → join; join → end; with a small loop."""

        def start(state):
            self.count("start")
            return Command(update={"log": ["start"]}, goto=["a", "b"])

        def step(name, delay=0.0):
            def node(state):
                self.count(name)
                threading.Event().wait(delay)
                return {"log": [name], f"{name}_saw": len(state.get("log", []))}

            return node

        def loop(state):
            self.count("loop")
            n = state.get("n", 0) + 1
            return Command(update={"n": n, "log": [f"loop{n}"]}, goto="loop" if n < 3 else "end")

        return (
            StateGraph(state_reducers={"log": "extend"})
            .add_node("start", start)
            .add_node("a", step("a", 0.03))
            .add_node("a2", step("a2"))
            .add_node("b", step("b", 0.01))
            .add_node("join", step("join"))
            .add_node("loop", loop)
            .add_node("end", step("end"))
            .add_edge("a", "a2")
            .add_edge("a2", "join")
            .add_edge("b", "join")
            .add_edge("join", "loop")
            .set_entry_point("start")
            .compile()
        )


def _full_run(input_state):
    counting = CountingGraph()
    app = counting.build()
    events = []
    result = app.invoke(input_state, on_event=events.append)
    records = [ev.record() for ev in events if ev.kind == EventKind.COMPLETED]
    return result, records, events


INPUT = {"log": ["input"], "user": "u1"}


def test_full_run_completes_expected_node_runs():
    result, records, _ = _full_run(INPUT)
    assert [r.node for r in records].count("loop") == 3
    assert len(records) == 9
    assert result["n"] == 3
    assert result["log"][0] == "input"
    assert result["log"][-1] == "end"


@pytest.mark.parametrize("k", range(0, 10))
def test_resume_from_a_causally_closed_prefix_skips_recorded_runs(k):
    expected, records, _ = _full_run(INPUT)
    journal = records[:k]  # completed events arrive parents-first, so any prefix is closed

    counting = CountingGraph()
    app = counting.build()
    resumed_events = []
    result = app.invoke(INPUT, journal=journal, on_event=resumed_events.append)

    assert result == expected
    expected_calls: dict[str, int] = {}
    for record in records[k:]:
        expected_calls[record.node] = expected_calls.get(record.node, 0) + 1
    assert counting.calls == expected_calls
    # No events for the journalled runs; the others keep their deterministic run ids.
    resumed = {(ev.run_id, ev.node) for ev in resumed_events}
    assert resumed == {(r.run_id, r.node) for r in records[k:]}


def test_resume_from_records_of_a_set_of_nodes():
    expected, records, _ = _full_run(INPUT)
    done = {"start", "b"}  # closed under causes: b's only parent is start
    journal = [r for r in records if r.node in done]

    counting = CountingGraph()
    result = counting.build().invoke(INPUT, journal=journal)
    assert result == expected
    assert "start" not in counting.calls and "b" not in counting.calls
    assert counting.calls == {"a": 1, "a2": 1, "join": 1, "loop": 3, "end": 1}


def test_resume_through_json_serialised_records():
    expected, records, _ = _full_run(INPUT)
    journal = [NodeRecord.from_dict(json.loads(json.dumps(r.to_dict()))) for r in records[:6]]
    counting = CountingGraph()
    result = counting.build().invoke(INPUT, journal=journal)
    assert result == expected
    assert sum(counting.calls.values()) == len(records) - 6


def test_resume_with_a_complete_journal_calls_no_node():
    expected, records, _ = _full_run(INPUT)
    counting = CountingGraph()
    events = []
    result = counting.build().invoke(INPUT, journal=records, on_event=events.append)
    assert result == expected
    assert counting.calls == {}
    assert events == []


def test_record_holds_run_id_node_delta_and_goto():
    _, records, events = _full_run(INPUT)
    completed = [ev for ev in events if ev.kind == EventKind.COMPLETED]
    for ev, record in zip(completed, records, strict=True):
        assert record.run_id == ev.run_id
        assert record.node == ev.node
        assert record.update == ev.update
        assert tuple(record.goto) == tuple(ev.goto)
    start = records[0]
    assert start.node == "start"
    assert start.update == {"log": ["start"]}
    assert tuple(start.goto) == ("a", "b")


def test_record_to_dict_round_trips_through_json():
    record = NodeRecord(
        run_id="0.1",
        node="fan",
        update={"items": [1, 2], "meta": {"k": "v"}},
        goto=("next", Send("worker", {"i": 3, "tags": ["x"]})),
    )
    data = record.to_dict()
    assert data == {
        "run_id": "0.1",
        "node": "fan",
        "update": {"items": [1, 2], "meta": {"k": "v"}},
        "goto": ["next", {"node": "worker", "payload": {"i": 3, "tags": ["x"]}}],
    }
    restored = NodeRecord.from_dict(json.loads(json.dumps(data)))
    assert restored == record
    assert restored.goto[1] == Send("worker", {"i": 3, "tags": ["x"]})


def test_records_hold_only_the_delta_in_a_long_chain():
    names = [f"n{i}" for i in range(200)]
    graph = StateGraph(state_reducers={"items": "extend"})
    for i, name in enumerate(names):
        graph.add_node(name, lambda s, i=i: {"items": [i]})
        if i:
            graph.add_edge(names[i - 1], name)
    app = graph.set_entry_point("n0").compile()
    events = []
    # A chain is not a loop; a generous limit keeps this test about journal size only.
    result = app.invoke({}, on_event=events.append, recursion_limit=10_000)
    records = [ev.record() for ev in events if ev.kind == EventKind.COMPLETED]
    assert result["items"] == list(range(200))
    assert len(records) == 200
    assert [r.update for r in records] == [{"items": [i]} for i in range(200)]
    assert all(len(r.update["items"]) == 1 for r in records)


def test_resume_map_fan_out_skips_journalled_workers():
    calls: dict[str, int] = {}
    lock = threading.Lock()

    def build():
        def start(state):
            with lock:
                calls["start"] = calls.get("start", 0) + 1
            return Command(goto=[Send("worker", {"i": i}) for i in range(20)])

        def worker(payload):
            with lock:
                calls[f"w{payload['i']}"] = calls.get(f"w{payload['i']}", 0) + 1
            return {"out": [payload["i"] * 10]}

        def join(state):
            with lock:
                calls["join"] = calls.get("join", 0) + 1
            return {"total": sum(state["out"])}

        return (
            StateGraph(state_reducers={"out": "extend"})
            .add_node("start", start)
            .add_node("worker", worker)
            .add_node("join", join)
            .add_edge("worker", "join")
            .set_entry_point("start")
            .compile()
        )

    events = []
    expected = build().invoke({}, on_event=events.append)
    records = [ev.record() for ev in events if ev.kind == EventKind.COMPLETED]
    assert records[0].node == "start" and len(records[0].goto) == 20

    # Keep start and the workers for even i, serialised as the service would store them.
    kept = [records[0]] + [
        r for r in records[1:] if r.node == "worker" and r.update["out"][0] % 20 == 0
    ]
    assert len(kept) == 11
    journal = [NodeRecord.from_dict(json.loads(json.dumps(r.to_dict()))) for r in kept]
    calls.clear()
    result = build().invoke({}, journal=journal)
    assert result == expected
    assert result["out"] == [i * 10 for i in range(20)]
    assert calls == {**{f"w{i}": 1 for i in range(1, 20, 2)}, "join": 1}
