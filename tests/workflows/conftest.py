"""Fixtures for the workflow tests: the discovered built-in workflows and a way to run them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from service.runtime.registry import RegisteredWorkflow, discover

RunWorkflow = Callable[..., dict[str, Any]]


@pytest.fixture(scope="session")
def builtin_workflows() -> dict[str, RegisteredWorkflow]:
    """The built-in workflows, as the service discovers them."""
    return discover(["workflows"])


@pytest.fixture
def run_workflow(builtin_workflows: dict[str, RegisteredWorkflow]) -> RunWorkflow:
    """Run a built-in workflow in-process: validate the input as the service does, invoke."""

    def run(name: str, **data: Any) -> dict[str, Any]:
        registered = builtin_workflows[name]
        return registered.graph.invoke(registered.validate_input(data))

    return run


@pytest.fixture
def visited_nodes(builtin_workflows: dict[str, RegisteredWorkflow]) -> RunWorkflow:
    """Run a built-in workflow and return ``{"state": ..., "nodes": [completed node names]}``."""

    def run(name: str, **data: Any) -> dict[str, Any]:
        registered = builtin_workflows[name]
        completed: list[str] = []

        def on_event(event: Any) -> None:
            if event.kind == "completed":
                completed.append(event.node)

        state = registered.graph.invoke(registered.validate_input(data), on_event=on_event)
        return {"state": state, "nodes": completed}

    return run
