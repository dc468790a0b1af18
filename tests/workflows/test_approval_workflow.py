"""Tests of the ``approval`` workflow: a run that waits for a person's decision."""

from __future__ import annotations

from typing import Any

import pytest

from graphflow import NodeRecord, RunInterrupted
from service.runtime.registry import RegisteredWorkflow


def _until_interrupted(
    wf: RegisteredWorkflow, state: dict[str, Any], journal: list[NodeRecord], resume: dict[str, Any]
) -> RunInterrupted:
    with pytest.raises(RunInterrupted) as paused:
        wf.graph.invoke(state, journal=journal, resume=resume)
    return paused.value


def test_approval_waits_then_publishes_the_approved_draft(
    builtin_workflows: dict[str, RegisteredWorkflow],
) -> None:
    wf = builtin_workflows["approval"]
    state = wf.validate_input({"topic": "graphs"})
    paused = _until_interrupted(wf, state, [], {})
    (asked,) = paused.interrupts
    assert asked.node == "review"
    assert asked.payload == {"draft": "A short note on graphs.", "revision": 0}

    out = wf.graph.invoke(state, journal=paused.journal, resume={asked.id: {"approved": True}})
    assert out["outcome"] == "published"
    assert out["published"] == "A short note on graphs."


def test_approval_revises_on_feedback_and_asks_again(
    builtin_workflows: dict[str, RegisteredWorkflow],
) -> None:
    wf = builtin_workflows["approval"]
    state = wf.validate_input({"topic": "graphs"})
    first = _until_interrupted(wf, state, [], {})
    resume = {first.interrupts[0].id: {"approved": False, "feedback": "shorter"}}
    second = _until_interrupted(wf, state, first.journal, resume)
    (asked,) = second.interrupts
    assert asked.id != first.interrupts[0].id
    assert asked.payload == {"draft": "A short note on graphs. Revised: shorter.", "revision": 1}

    out = wf.graph.invoke(state, journal=second.journal, resume={**second.resume, asked.id: True})
    assert out["outcome"] == "published"
    assert [r["approved"] for r in out["reviews"]] == [False, True]


def test_approval_gives_up_after_max_revisions(
    builtin_workflows: dict[str, RegisteredWorkflow],
) -> None:
    wf = builtin_workflows["approval"]
    state = wf.validate_input({"topic": "graphs", "max_revisions": 1})
    journal: list[NodeRecord] = []
    resume: dict[str, Any] = {}
    for _ in range(2):
        paused = _until_interrupted(wf, state, journal, resume)
        journal, resume = paused.journal, {**paused.resume, paused.interrupts[0].id: False}
    assert wf.graph.invoke(state, journal=journal, resume=resume)["outcome"] == "rejected"
