"""Translation of engine node events into what the store persists and clients see."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from graphflow_core import EventKind, NodeEvent
from service.storage.records import NodeEventWrite, NodeRunStatus, RunError

_EVENT_TYPES = {
    EventKind.STARTED: ("node_started", NodeRunStatus.RUNNING),
    EventKind.COMPLETED: ("node_completed", NodeRunStatus.SUCCEEDED),
    EventKind.FAILED: ("node_failed", NodeRunStatus.FAILED),
}


def _wall(monotonic_ts: float) -> datetime:
    return datetime.fromtimestamp(time.time() - time.monotonic() + monotonic_ts, UTC)


def check_json(value: Any, what: str) -> None:
    """Raise ``TypeError`` naming ``what`` when ``value`` cannot be stored as JSON."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} is not JSON serializable: {exc}") from exc


def node_event_write(ev: NodeEvent) -> NodeEventWrite:
    """Translate an engine ``NodeEvent`` into the row change and stream event to store."""
    type_, status = _EVENT_TYPES[ev.kind]
    started = _wall(ev.started_at)
    finished = _wall(ev.ended_at) if ev.ended_at is not None else None
    duration = (ev.ended_at - ev.started_at) * 1000 if ev.ended_at is not None else None
    data: dict[str, Any] = {
        "node": ev.node,
        "node_run_id": ev.run_id,
        "attempt": ev.attempt,
        "parents": list(ev.parents),
        "started_at": started.isoformat(),
    }
    update = goto = error = None
    if finished is not None:
        data["finished_at"] = finished.isoformat()
        data["duration_ms"] = duration
    if ev.kind == EventKind.COMPLETED:
        record = ev.record().to_dict()
        update, goto = record["update"], record["goto"]
        check_json(update, f"update of node {ev.node!r}")
        check_json(goto, f"goto of node {ev.node!r}")
        data["update"] = update
        data["goto"] = goto
    elif ev.kind == EventKind.FAILED:
        err = ev.error or RuntimeError("unknown error")
        error = RunError(type(err).__name__, str(err), ev.node)
        data["error"] = error.to_dict()
        data["retrying"] = ev.retrying
    return NodeEventWrite(
        type=type_,
        activation_id=ev.run_id,
        node=ev.node,
        status=status,
        attempt=ev.attempt,
        parents=ev.parents,
        started_at=started,
        finished_at=finished,
        duration_ms=duration,
        update=update,
        goto=goto,
        error=error,
        data=data,
    )
