"""The graphflow command line (in process)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from service.cli import app
from tests.conftest import SAMPLE_WORKFLOWS


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("GRAPHFLOW_WORKFLOWS", SAMPLE_WORKFLOWS)
    return CliRunner()


def test_graphs_lists_registered_graphs(runner: CliRunner) -> None:
    result = runner.invoke(app, ["graphs"])
    assert result.exit_code == 0, result.output
    assert "three_step" in result.output and "pipeline" in result.output


def test_run_executes_locally_and_prints_the_result(runner: CliRunner) -> None:
    result = runner.invoke(app, ["run", "three_step", "--input", '{"x": 1}'])
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.output and "30" in result.output


def test_run_reports_failures_and_bad_input(runner: CliRunner) -> None:
    failed = runner.invoke(app, ["run", "failing", "--input", '{"x": 1}'])
    assert failed.exit_code == 1 and "boom" in failed.output
    assert runner.invoke(app, ["run", "three_step", "--input", '{"x": -1}']).exit_code == 2
    assert runner.invoke(app, ["run", "three_step", "--input", "[1]"]).exit_code == 2
    assert runner.invoke(app, ["run", "nope"]).exit_code == 2
