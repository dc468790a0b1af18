"""A run that waits for a person: draft, ask for approval, then publish or revise and ask again.

``review`` calls ``interrupt()``: the run pauses (status ``interrupted``) until someone resumes
it with a decision, ``{"approved": true}`` or ``{"approved": false, "feedback": "..."}``. Each
round of review is its own node run, so each asks afresh. Code before ``interrupt()`` runs
again on resume, which is why ``review`` does nothing before it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from graphflow import Command, StateGraph, interrupt, workflow
from workflows._common import State


class ApprovalInput(BaseModel):
    """Input of ``approval``: what to write about, and how many revisions to allow."""

    model_config = ConfigDict(extra="forbid")

    topic: str = Field(min_length=1, max_length=500, description="What the draft is about.")
    max_revisions: int = Field(default=3, ge=0, le=20, description="Revisions before giving up.")


def draft(state: State) -> dict[str, Any]:
    """Write the first draft."""
    return {"draft": f"A short note on {state['topic']}.", "revision": 0}


def review(state: State) -> Command:
    """Ask a person to approve the draft; publish it, revise it, or give up."""
    decision = interrupt({"draft": state["draft"], "revision": state["revision"]})
    approved = decision is True or (isinstance(decision, dict) and decision.get("approved") is True)
    feedback = decision.get("feedback", "") if isinstance(decision, dict) else ""
    record = {"revision": state["revision"], "approved": approved, "feedback": feedback}
    if approved:
        return Command(update={"reviews": [record]}, goto="publish")
    if state["revision"] >= state.get("max_revisions", 3):
        return Command(update={"reviews": [record]}, goto="give_up")
    return Command(update={"reviews": [record], "feedback": feedback}, goto="revise")


def revise(state: State) -> dict[str, Any]:
    """Rewrite the draft with the reviewer's feedback."""
    note = f" Revised: {state['feedback']}." if state.get("feedback") else " Revised."
    return {"draft": state["draft"] + note, "revision": state["revision"] + 1}


def publish(state: State) -> dict[str, Any]:
    """Publish the approved draft."""
    return {"outcome": "published", "published": state["draft"]}


def give_up(state: State) -> dict[str, Any]:
    """Stop after too many revisions."""
    return {"outcome": "rejected"}


@workflow("approval", input_model=ApprovalInput)
def create_approval() -> StateGraph:
    """Draft a note, wait for a person's approval, then publish it or revise and ask again."""
    graph = StateGraph(state_reducers={"reviews": "extend"})
    graph.add_node("draft", draft)
    graph.add_node("review", review, destinations=["publish", "revise", "give_up"])
    graph.add_node("revise", revise)
    graph.add_node("publish", publish, destinations=[])
    graph.add_node("give_up", give_up, destinations=[])
    graph.add_edge("draft", "review")
    graph.add_edge("revise", "review")
    graph.set_entry_point("draft")
    return graph
