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


def test_vacuum_gives_the_space_of_deleted_runs_back(
    runner: CliRunner, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.storage.filters import RunFilter
    from service.storage.migrations import upgrade
    from service.storage.retention import RunRetention
    from service.storage.sql import SqlRunStore
    from tests.seeding import seed_runs

    monkeypatch.setenv("GRAPHFLOW_DATABASE_URL", database_url)
    store = SqlRunStore(database_url, pool_size=2)
    try:
        upgrade(store.write_engine)
        seed_runs(store, 300, payload_bytes=200)
        assert RunRetention(store).purge(RunFilter()) == 300

        result = runner.invoke(app, ["vacuum"])

        assert result.exit_code == 0, result.output
        assert "vacuumed" in result.output
        if store.sqlite:
            with store.read_engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA freelist_count").scalar() == 0
    finally:
        store.close()
