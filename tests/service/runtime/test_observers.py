"""Observers see a run's life from the runtime; one that fails never reaches the run."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi.testclient import TestClient

from graphflow_core import NodeEvent
from service.app import create_app
from service.runtime.observers import RunObserver
from service.storage.records import RunStatus
from tests.conftest import make_settings


class Recorder(RunObserver):
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def run_created(self, run_id: str, graph: str) -> None:
        self.calls.append(("created", graph))

    def run_started(
        self, run_id: str, graph: str, created_at: datetime, started_at: datetime, resumed: bool
    ) -> None:
        assert started_at >= created_at
        self.calls.append(("started", graph, resumed))

    def node_event(self, run_id: str, graph: str, event: NodeEvent) -> None:
        self.calls.append(("node", event.node, event.kind.value))

    def run_finished(self, run_id: str, graph: str | None, status: RunStatus) -> None:
        self.calls.append(("finished", graph, status.value))

    def batch_stored(self, operations: int, seconds: float) -> None:
        assert operations >= 1 and seconds >= 0


class Broken(RunObserver):
    def node_event(self, run_id: str, graph: str, event: NodeEvent) -> None:
        raise RuntimeError("an observer bug")


def test_observers_see_a_run_from_creation_to_its_end_and_a_broken_one_is_ignored(
    sqlite_url: str,
) -> None:
    recorder = Recorder()
    app = create_app(make_settings(sqlite_url), observers=[Broken(), recorder])
    with TestClient(app) as client:
        response = client.post("/graphs/three_step/runs?wait=true", json={"input": {"x": 1}})
        assert response.status_code == 200 and response.json()["status"] == "succeeded"
    nodes = [call for call in recorder.calls if call[0] == "node"]
    assert recorder.calls[0] == ("created", "three_step")
    assert recorder.calls[1] == ("started", "three_step", False)
    assert [kind for _, _, kind in nodes] == ["started", "completed"] * 3
    assert recorder.calls[-1] == ("finished", "three_step", "succeeded")
