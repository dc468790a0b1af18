"""Tests of the ``resilient_processor`` workflow (pattern 5)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pydantic
import pytest

from service.runtime.registry import RegisteredWorkflow

RunWorkflow = Callable[..., dict[str, Any]]


def test_resilient_processor_uses_only_the_primary_when_it_never_fails(
    visited_nodes: RunWorkflow,
) -> None:
    run = visited_nodes("resilient_processor", failure_rate=0)

    assert run["nodes"] == ["primary", "success_handler", "backup_combiner"]
    state = run["state"]
    assert (state["status"], state["method"]) == ("completed", "primary")
    assert state["final_result"] == "Primary processing completed"
    assert state["attempts"] == ["primary_success"]


def test_resilient_processor_fans_out_to_all_backups_when_the_primary_fails(
    visited_nodes: RunWorkflow,
) -> None:
    run = visited_nodes("resilient_processor", failure_rate=1, backup_failure_rate=0)

    assert sorted(run["nodes"]) == sorted(
        ["primary", "backup_a", "backup_b", "backup_c", "backup_combiner"]
    )
    state = run["state"]
    assert (state["status"], state["method"]) == ("completed", "backup")
    assert state["successful_backups"] == ["BackupA_success", "BackupB_success", "BackupC_success"]
    assert state["final_result"] == "BackupA backup processing completed"
    assert state["errors"] == [{"node": "primary", "error": "Primary processor failed"}]


def test_resilient_processor_reports_failure_when_every_backup_fails(
    run_workflow: RunWorkflow,
) -> None:
    state = run_workflow("resilient_processor", failure_rate=1, backup_failure_rate=1)

    assert (state["status"], state["method"]) == ("failed", "all_failed")
    assert state["all_attempts"] == [
        "BackupA_failed",
        "BackupB_failed",
        "BackupC_failed",
        "primary_failed",
    ]
    assert len(state["errors"]) == 4


def test_resilient_processor_is_reproducible_with_a_seed(run_workflow: RunWorkflow) -> None:
    outcomes = {
        seed: sorted(run_workflow("resilient_processor", failure_rate=0.5, seed=seed)["attempts"])
        for seed in range(12)
    }
    again = {
        seed: sorted(run_workflow("resilient_processor", failure_rate=0.5, seed=seed)["attempts"])
        for seed in range(12)
    }

    assert again == outcomes
    # With a 50% failure rate, twelve seeds exercise both the primary and the backup path.
    assert {"primary_success" in attempts for attempts in outcomes.values()} == {True, False}


@pytest.mark.parametrize(
    "bad_input",
    [{"failure_rate": 1.5}, {"backup_failure_rate": -0.1}, {"seed": "abc"}, {"retries": 3}],
)
def test_resilient_processor_input_rejects_malformed_input(
    builtin_workflows: dict[str, RegisteredWorkflow], bad_input: dict[str, object]
) -> None:
    with pytest.raises(pydantic.ValidationError):
        builtin_workflows["resilient_processor"].validate_input(bad_input)
