"""Pattern 5, retry with parallel fallbacks: if the primary fails, three backups run at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from graphflow import Command, StateGraph, workflow
from workflows._common import State, node_rng

# Backup node → (display name, nominal reliability).
BACKUPS: dict[str, tuple[str, float]] = {
    "backup_a": ("BackupA", 0.9),
    "backup_b": ("BackupB", 0.8),
    "backup_c": ("BackupC", 0.7),
}


class ResilientInput(BaseModel):
    """Input of ``resilient_processor``: the simulated failure rates and an optional seed."""

    model_config = ConfigDict(extra="forbid")

    failure_rate: float = Field(0.3, ge=0, le=1, description="Chance the primary fails.")
    backup_failure_rate: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Chance each backup fails; default: 0.1, 0.2 and 0.3 for backups a, b, c.",
    )
    seed: int | None = Field(None, description="Seed for reproducible simulated failures.")


def primary_processor(state: State) -> Command:
    """Try the primary; on a (simulated) failure fan out to all backups."""
    if node_rng(state, "primary").random() < state.get("failure_rate", 0.3):
        return Command(
            update={
                "attempts": ["primary_failed"],
                "errors": [{"node": "primary", "error": "Primary processor failed"}],
            },
            goto=list(BACKUPS),
        )
    return Command(
        update={"attempts": ["primary_success"], "results": ["Primary processing completed"]},
        goto="success_handler",
    )


def backup_processor(node: str, name: str, reliability: float) -> Callable[[State], dict[str, Any]]:
    """Build a backup that succeeds with probability ``reliability`` (or the input's override)."""

    def backup(state: State) -> dict[str, Any]:
        override = state.get("backup_failure_rate")
        failure_rate = 1 - reliability if override is None else override
        if node_rng(state, node).random() < failure_rate:
            return {
                "attempts": [f"{name}_failed"],
                "errors": [{"node": node, "error": f"{name} backup failed"}],
            }
        return {"attempts": [f"{name}_success"], "results": [f"{name} backup processing completed"]}

    return backup


def success_handler(state: State) -> dict[str, Any]:
    """Mark the run as completed by the primary."""
    return {"status": "completed", "method": "primary"}


def backup_combiner(state: State) -> dict[str, Any]:
    """Decide the outcome: primary success, first successful backup, or total failure."""
    attempts = sorted(state.get("attempts", []))
    results = sorted(state.get("results", []))
    if "primary_success" in attempts:
        return {"status": "completed", "method": "primary", "final_result": results[0]}
    if results:
        return {
            "status": "completed",
            "method": "backup",
            "successful_backups": [a for a in attempts if a.endswith("_success")],
            "final_result": results[0],
        }
    return {"status": "failed", "method": "all_failed", "all_attempts": attempts}


@workflow("resilient_processor", input_model=ResilientInput)
def create_resilient_processor() -> StateGraph:
    """Run a primary processor with three parallel backups as fallback."""
    graph = StateGraph(
        state_reducers={"attempts": "extend", "results": "extend", "errors": "extend"}
    )
    graph.add_node("primary", primary_processor, destinations=[*BACKUPS, "success_handler"])
    for node, (name, reliability) in BACKUPS.items():
        graph.add_node(node, backup_processor(node, name, reliability))
        graph.add_edge(node, "backup_combiner")
    graph.add_node("success_handler", success_handler)
    graph.add_edge("success_handler", "backup_combiner")
    graph.add_node("backup_combiner", backup_combiner, destinations=[])
    graph.set_entry_point("primary")
    return graph
