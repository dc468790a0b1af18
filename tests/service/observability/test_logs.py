"""JSON log lines: the formatter, the runner's run ids in them, and the commands that use them."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.observability.logs import JsonFormatter
from tests.conftest import ROOT, LiveServer, fresh_postgres_database, make_settings, server_env


def record(message: str, *args: object, **kwargs: Any) -> logging.LogRecord:
    """A record as ``logging.getLogger("graphflow.test").error`` makes it."""
    logger = logging.getLogger("graphflow.test")
    return logger.makeRecord(
        logger.name,
        logging.ERROR,
        __file__,
        1,
        message,
        args,
        kwargs.pop("exc_info", None),
        **kwargs,
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line of ``text`` as JSON (fails on a line that is not)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_a_line_is_one_json_object_with_the_run_and_node_given_in_extra() -> None:
    line = JsonFormatter().format(
        record("run %s: node %s failed", "r-1", "b", extra={"run_id": "r-1", "node": "b"})
    )
    assert "\n" not in line
    fields = json.loads(line)
    assert fields["message"] == "run r-1: node b failed"
    assert fields["level"] == "ERROR" and fields["logger"] == "graphflow.test"
    assert fields["run_id"] == "r-1" and fields["node"] == "b"
    assert fields["time"].endswith("+00:00")
    assert "exc_info" not in fields


def test_a_line_without_context_has_no_run_id_and_keeps_what_json_cannot_hold() -> None:
    fields = json.loads(JsonFormatter().format(record("state %s", {"x": object()})))
    assert "run_id" not in fields and "node" not in fields
    assert fields["message"].startswith("state {'x': <object object at")


def test_an_exception_comes_with_its_traceback_text() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        line = JsonFormatter().format(record("it failed", exc_info=sys.exc_info()))
    fields = json.loads(line)
    assert "\n" not in line
    assert fields["exc_info"].startswith("Traceback (most recent call last):")
    assert fields["exc_info"].endswith("ValueError: boom\nsecond line")


@pytest.fixture
def runner_log() -> Iterator[io.StringIO]:
    """What ``graphflow.service.runner`` logs at INFO, through the JSON formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("graphflow.service.runner")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_the_runner_tags_its_lines_about_one_run_with_its_id(
    sqlite_url: str, orphaned_run: str, runner_log: io.StringIO
) -> None:
    with TestClient(create_app(make_settings(sqlite_url))) as client:
        deadline = time.monotonic() + 10
        while client.get(f"/runs/{orphaned_run}").json()["status"] != "succeeded":
            assert time.monotonic() < deadline, "the orphaned run was not resumed"
            time.sleep(0.02)
    resumed = [f for f in json_lines(runner_log.getvalue()) if "resuming" in f["message"]]
    assert resumed == [
        {
            "time": resumed[0]["time"],
            "level": "INFO",
            "logger": "graphflow.service.runner",
            "message": f"resuming run {orphaned_run} (running)",
            "run_id": orphaned_run,
        }
    ]


def test_serve_writes_json_lines_for_uvicorn_too_when_asked(
    sqlite_url: str, start_server: Callable[..., LiveServer]
) -> None:
    server = start_server(sqlite_url, cli=True, GRAPHFLOW_LOG_FORMAT="json")
    server.stop()
    lines = json_lines(server.log_path.read_text())
    # The unauthenticated-bind warning goes through uvicorn's logger.
    warnings = [f for f in lines if f["logger"] == "uvicorn.error" and f["level"] == "WARNING"]
    assert any("unauthenticated" in f["message"] for f in warnings), lines


def test_worker_writes_json_lines_when_asked(tmp_path: Path) -> None:
    with fresh_postgres_database() as url:
        health = tmp_path / "worker.health"
        cmd = [sys.executable, "-m", "service.cli", "worker", "--health-file", str(health)]
        env = server_env(url, GRAPHFLOW_LOG_FORMAT="json")
        with subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True) as proc:
            try:
                deadline = time.monotonic() + 30
                while not health.exists():
                    assert proc.poll() is None, "the worker exited early"
                    assert time.monotonic() < deadline, "the worker did not start"
                    time.sleep(0.05)
            finally:
                proc.terminate()
                _, err = proc.communicate(timeout=15)
    lines = json_lines(err)
    messages = [(f["logger"], f["level"], f["message"]) for f in lines]
    assert any(
        logger == "graphflow.service.worker" and level == "INFO" and "started" in message
        for logger, level, message in messages
    ), err
