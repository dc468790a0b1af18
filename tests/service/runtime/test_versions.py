"""Graph versions on the runner and a real store (both databases): a run that resumes on
another version of its graph than the one it started on fails, naming both, unless its
workflow says ``on_version_change="resume"``; a retry or a fork moves it on purpose."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from sqlalchemy import update

from service.runtime.registry import RegisteredWorkflow, VersionChangePolicy, discover
from service.runtime.runner import RunManager
from service.storage.continuations import NO_VALUE, Owner
from service.storage.sql import SqlRunStore
from service.storage.tables import Run, new_run_values
from tests.conftest import make_settings

DURABLE_WORKFLOWS = "tests.integration.durable_workflows"


@pytest.fixture(scope="module")
def workflows() -> dict[str, RegisteredWorkflow]:
    return discover([DURABLE_WORKFLOWS])


def _manager(
    store: SqlRunStore,
    workflows: dict[str, RegisteredWorkflow],
    version: str,
    on_version_change: VersionChangePolicy = "fail",
) -> RunManager:
    """A runner whose graphs are the durable test graphs, all registered as ``version``."""
    loaded = {
        name: RegisteredWorkflow(
            wf.name,
            wf.description,
            wf.graph,
            wf.input_model,
            version=version,
            on_version_change=on_version_change,
        )
        for name, wf in workflows.items()
    }
    settings = make_settings(store.url, workflows=[DURABLE_WORKFLOWS])
    return RunManager(store, loaded, settings, lambda _rid: None)


def _create(manager: RunManager, graph: str, run_input: dict[str, Any], **values: Any) -> str:
    """Store a queued run of ``graph`` as the API does: on the version ``manager`` loaded."""
    run = new_run_values(
        run_id=str(uuid.uuid4()),
        graph=graph,
        input=run_input,
        max_concurrent=None,
        idempotency_key=None,
        owner_id=manager.owner_id,
        lease_seconds=30,
        graph_version=manager.workflows[graph].version,
        **values,
    )
    assert manager.create(run).result(10)
    return str(run["id"])


def _run(store: SqlRunStore, run_id: str) -> Run:
    run = store.get_run(run_id)
    assert run is not None
    return run


def _owner(manager: RunManager) -> Owner:
    return Owner(manager.owner_id, 30, None, announce=False)


def _interrupted(store: SqlRunStore, manager: RunManager) -> tuple[str, dict[str, str]]:
    """A ``two_questions`` run that waits for both answers; its interrupt ids by node."""
    rid = _create(manager, "two_questions", {"tag": "t", "delay": 0})
    manager.execute(rid)
    run = _run(store, rid)
    assert run.status == "interrupted"
    return rid, {i["node"]: i["id"] for i in run.interrupts or []}


def test_a_run_records_the_version_it_started_on(
    store: SqlRunStore, workflows: dict[str, RegisteredWorkflow]
) -> None:
    alpha = _manager(store, workflows, "alpha")
    rid = _create(alpha, "steady_chain", {"tag": "t", "delay": 0})
    alpha.execute(rid)
    run = _run(store, rid)
    assert run.status == "succeeded" and run.graph_version == "alpha"


def test_a_run_created_on_one_version_records_the_version_of_the_process_that_starts_it(
    store: SqlRunStore, workflows: dict[str, RegisteredWorkflow]
) -> None:
    # A rolling deploy: the API that took the run had loaded alpha, the worker loaded beta.
    alpha, beta = _manager(store, workflows, "alpha"), _manager(store, workflows, "beta")
    rid = _create(alpha, "steady_chain", {"tag": "t", "delay": 0})
    assert _run(store, rid).graph_version == "alpha"
    beta.execute(rid)
    run = _run(store, rid)
    assert run.status == "succeeded", run.error  # its first start is no resume
    assert run.graph_version == "beta"


def test_an_interrupted_run_resumed_on_a_changed_graph_fails_naming_both_versions(
    store: SqlRunStore, workflows: dict[str, RegisteredWorkflow]
) -> None:
    rid, ids = _interrupted(store, _manager(store, workflows, "alpha"))
    beta = _manager(store, workflows, "beta")
    store.resume_run(rid, {ids["legal"]: 1, ids["finance"]: 2}, NO_VALUE, _owner(beta))
    beta.execute(rid)

    run = _run(store, rid)
    assert run.status == "failed" and run.error is not None
    assert run.error["type"] == "GraphVersionChanged"
    message = run.error["message"]
    assert "graph 'two_questions' changed from version alpha to beta" in message
    assert "retry or fork" in message and "on_version_change='resume'" in message
    assert run.graph_version == "alpha"
    # Nothing ran on the changed graph: the askers still wait as they did.
    rows = {r.node: r.status for r in store.node_runs(rid)}
    assert rows == {"start": "succeeded", "legal": "interrupted", "finance": "interrupted"}


def test_with_on_version_change_resume_the_run_resumes_and_keeps_its_version(
    store: SqlRunStore, workflows: dict[str, RegisteredWorkflow]
) -> None:
    rid, ids = _interrupted(store, _manager(store, workflows, "alpha"))
    beta = _manager(store, workflows, "beta", on_version_change="resume")
    store.resume_run(rid, {ids["legal"]: 1, ids["finance"]: 2}, NO_VALUE, _owner(beta))
    beta.execute(rid)

    run = _run(store, rid)
    assert run.status == "succeeded", run.error
    assert run.output is not None and run.output["answers"] == {"legal": 1, "finance": 2}
    assert run.graph_version == "alpha"  # the version it started on


def test_a_run_taken_over_after_a_crash_on_a_changed_graph_fails(
    store: SqlRunStore, workflows: dict[str, RegisteredWorkflow]
) -> None:
    alpha = _manager(store, workflows, "alpha")
    rid = _create(alpha, "steady_chain", {"tag": "t", "delay": 0})
    store.claim_run(rid, alpha.owner_id, 0.05)  # alpha's process "dies" right after starting it
    time.sleep(0.1)

    beta = _manager(store, workflows, "beta")
    assert beta.recover() == [rid]
    beta.execute(beta._queue.get_nowait() or "")
    run = _run(store, rid)
    assert run.status == "failed" and run.error is not None
    assert run.error["type"] == "GraphVersionChanged"
    assert "from version alpha to beta" in run.error["message"]


def test_a_retry_goes_on_with_the_loaded_version_on_purpose(
    store: SqlRunStore, workflows: dict[str, RegisteredWorkflow]
) -> None:
    rid, ids = _interrupted(store, _manager(store, workflows, "alpha"))
    beta = _manager(store, workflows, "beta")
    store.resume_run(rid, {ids["legal"]: 1, ids["finance"]: 2}, NO_VALUE, _owner(beta))
    beta.execute(rid)
    assert _run(store, rid).status == "failed"

    retried = store.retry_run(rid, _owner(beta), "beta")
    assert retried.graph_version == "beta"
    event = store.events_after(rid, 0, 10_000)[-1]
    assert event.type == "run_retried"
    assert event.data["graph_version"] == {"from": "alpha", "to": "beta"}
    beta.execute(rid)
    run = _run(store, rid)
    assert run.status == "succeeded", run.error
    assert run.graph_version == "beta"


def test_a_fork_records_the_version_it_is_given(
    store: SqlRunStore, workflows: dict[str, RegisteredWorkflow]
) -> None:
    alpha = _manager(store, workflows, "alpha")
    rid = _create(alpha, "steady_chain", {"tag": "t", "delay": 0}, timeout_seconds=60)
    alpha.execute(rid)
    pivot = store.node_runs(rid)[3].activation_id

    beta = _manager(store, workflows, "beta")
    fork = store.fork_run(
        rid, pivot, {"tag": "f", "delay": 0}, str(uuid.uuid4()), _owner(beta), "beta"
    )
    assert fork.graph_version == "beta"
    assert fork.timeout_seconds == 60 and fork.deadline_at is None  # counted afresh
    beta.execute(fork.id)
    assert _run(store, fork.id).status == "succeeded"


def test_a_run_stored_without_a_version_resumes_as_before(
    store: SqlRunStore, workflows: dict[str, RegisteredWorkflow]
) -> None:
    alpha = _manager(store, workflows, "alpha")
    rid, ids = _interrupted(store, alpha)
    with store.write_engine.begin() as conn:  # as a run stored before versions were recorded
        conn.execute(update(Run).where(Run.id == rid).values(graph_version=None))
    beta = _manager(store, workflows, "beta")
    store.resume_run(rid, {ids["legal"]: 1, ids["finance"]: 2}, NO_VALUE, _owner(beta))
    beta.execute(rid)
    assert _run(store, rid).status == "succeeded"
