"""Service functions behind resume, retry and fork: runs that go on after they settled."""

from __future__ import annotations

import uuid

from service.api.catalog import Catalog
from service.api.operations import get_run, validate_input
from service.api.schemas import ForkRequest, ResumeRequest, ResumeValues, RunPublic
from service.errors import RunNotFoundError
from service.runtime.runner import RunManager
from service.settings import Settings
from service.storage.base import RunStore
from service.storage.continuations import NO_VALUE, Owner
from service.storage.engine import is_sqlite
from service.storage.tables import Run


def _owner(settings: Settings, runner: RunManager) -> Owner:
    """This process runs it if it executes runs; else whichever worker claims it first."""
    return Owner(
        owner_id=settings.owner_id if runner.executes else None,
        lease_seconds=settings.lease_seconds,
        max_active_runs=settings.max_active_runs,
        announce=not is_sqlite(settings.database_url),
    )


def _queued(store: RunStore, runner: RunManager, run: Run) -> RunPublic:
    """Hand a run queued again (or anew) to this process's workers, wake its streams here,
    and return its view."""
    if runner.executes:
        runner.submit(run.id)
    runner.notify(run.id)  # stored outside the journal: streams here read it from the store
    return get_run(store, run.id)


def resume_run(
    store: RunStore, runner: RunManager, settings: Settings, run_id: uuid.UUID, body: ResumeRequest
) -> RunPublic:
    """Give an interrupted run its values and queue it again (``continuations.resume``)."""
    if isinstance(body, ResumeValues):
        values, value = body.values, NO_VALUE
    else:
        values, value = None, body.value
    run = store.resume_run(str(run_id), values, value, _owner(settings, runner))
    return _queued(store, runner, run)


def retry_run(
    store: RunStore, catalog: Catalog, runner: RunManager, settings: Settings, run_id: uuid.UUID
) -> RunPublic:
    """Queue a failed, cancelled or timed-out run again (``continuations.retry``), to go on
    with the version of its graph loaded now (a run failed for a changed graph goes on on
    purpose). Raises ``RunNotFoundError``, besides what ``continuations.retry`` raises."""
    rid = str(run_id)
    run = store.get_run(rid)
    if run is None:
        raise RunNotFoundError(rid)
    loaded = catalog.workflows.get(run.graph)  # not loaded: the runner fails it, as it says
    version = None if loaded is None else loaded.version
    return _queued(store, runner, store.retry_run(rid, _owner(settings, runner), version))


def fork_run(
    store: RunStore,
    catalog: Catalog,
    runner: RunManager,
    settings: Settings,
    run_id: uuid.UUID,
    body: ForkRequest,
) -> RunPublic:
    """A new run from one of ``run_id``'s node runs, on its input patched by
    ``body.input_patch`` and checked against the graph (``continuations.fork``).

    Raises ``RunNotFoundError``, ``GraphNotFoundError`` (the graph is not loaded any more) and
    ``InvalidInputError``, besides what ``continuations.fork`` raises.
    """
    source_id = str(run_id)
    source = store.get_run(source_id)
    if source is None:
        raise RunNotFoundError(source_id)
    wf = catalog.get(source.graph)
    run_input = validate_input(wf, {**source.input, **body.input_patch}, "input_patch")
    new_id = str(uuid.uuid4())
    owner = _owner(settings, runner)
    run = store.fork_run(source_id, body.from_node_run, run_input, new_id, owner, wf.version)
    return _queued(store, runner, run)
