"""The limits a run executes within: its deadline, the cap on one execution, its graph version.

A claimed run passes ``refusal`` before it runs (again); while it runs, ``start_timer`` stops it
at the first limit it reaches. See ``service.runtime.runner`` for how deadlines and graph
versions behave across processes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from service.runtime.registry import RegisteredWorkflow
from service.storage.records import RunError, RunStatus
from service.storage.tables import Run, utcnow

__all__ = ["deadline_error", "refusal", "start_timer"]

# The runner's logger: what it logs about a run keeps one name, whichever module says it.
log = logging.getLogger("graphflow.service.runner")


def refusal(run: Run, wf: RegisteredWorkflow) -> tuple[RunStatus, RunError] | None:
    """How a claimed run ends before it runs (again), or None when it may run: its
    deadline passed (say, while it waited for a person), or it would resume on another
    version of its graph than the one it started on."""
    if run.deadline_at is not None and run.timeout_seconds is not None:
        if run.deadline_at <= utcnow():
            return RunStatus.TIMED_OUT, deadline_error(run)
    started_on = run.graph_version
    # A run whose only event is this claim's run_started resumes nothing. Runs stored
    # before versions were recorded (no version) resume as they always did.
    if run.last_seq > 1 and started_on is not None and started_on != wf.version:
        if wf.on_version_change == "fail":
            error = RunError.version_changed(run.graph, started_on, wf.version)
            return RunStatus.FAILED, error
        log.warning(
            "run %s started on version %s of graph %r and resumes on version %s "
            "(on_version_change='resume')",
            run.id,
            started_on,
            run.graph,
            wf.version,
            extra={"run_id": run.id},
        )
    return None


def deadline_error(run: Run) -> RunError:
    """The error of a run stopped at its deadline (which its timer was armed for), or refused
    a start past it."""
    assert run.timeout_seconds is not None and run.deadline_at is not None
    return RunError.deadline_passed(run.timeout_seconds, run.deadline_at)


def start_timer(
    run: Run, max_run_seconds: float | None, expire: Callable[[bool], None]
) -> threading.Timer | None:
    """Arm the earlier of the run's deadline (``timeout_seconds`` from its first start)
    and GRAPHFLOW_MAX_RUN_SECONDS (from this start: a resume or retry counts anew).

    When it passes, ``expire`` is called with whether it was the deadline.
    """
    now = utcnow()
    limits: list[tuple[float, bool]] = []  # (seconds left, whether it is the deadline)
    if max_run_seconds is not None:
        started = run.started_at or now
        limits.append((max_run_seconds - (now - started).total_seconds(), False))
    if run.deadline_at is not None:
        limits.append(((run.deadline_at - now).total_seconds(), True))
    if not limits:
        return None
    remaining, is_deadline = min(limits)
    timer = threading.Timer(max(0.0, remaining), expire, (is_deadline,))
    timer.daemon = True
    timer.start()
    return timer
