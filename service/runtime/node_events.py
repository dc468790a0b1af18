"""Translation of engine node events into what the store persists and clients see."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from graphflow_core import EventKind, NodeEvent
from service.storage.records import (
    EncodedJSON,
    NodeEventWrite,
    NodeRunStatus,
    RunError,
    encode_json,
)

_EVENT_TYPES = {
    EventKind.STARTED: ("node_started", NodeRunStatus.RUNNING),
    EventKind.COMPLETED: ("node_completed", NodeRunStatus.SUCCEEDED),
    EventKind.FAILED: ("node_failed", NodeRunStatus.FAILED),
    EventKind.INTERRUPTED: ("node_interrupted", NodeRunStatus.INTERRUPTED),
}


def _wall(monotonic_ts: float) -> datetime:
    return datetime.fromtimestamp(time.time() - time.monotonic() + monotonic_ts, UTC)


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
    if ev.kind == EventKind.FAILED:
        err = ev.error or RuntimeError("unknown error")
        error = RunError(type(err).__name__, str(err), ev.node)
        data["error"] = error.to_dict()
        data["retrying"] = ev.retrying
    encoded = json.dumps(data)  # plain strings and numbers: cannot fail
    if ev.kind == EventKind.COMPLETED:
        record = ev.record().to_dict()
        update = encode_json(record["update"], f"update of node {ev.node!r}")
        goto = encode_json(record["goto"], f"goto of node {ev.node!r}")
        # Splice the encoded update and goto in as the last members of the event's object,
        # exactly where json.dumps would have put them.
        encoded = f'{encoded[:-1]}, "update": {update}, "goto": {goto}}}'
    elif ev.interrupt is not None:
        payload = encode_json(ev.interrupt.payload, f"interrupt payload of node {ev.node!r}")
        interrupt_id = json.dumps(ev.interrupt.id)
        encoded = f'{encoded[:-1]}, "interrupt": {{"id": {interrupt_id}, "payload": {payload}}}}}'
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
        data=EncodedJSON(encoded),
    )
