"""The run-store seam: the records that cross it and the ``RunStore`` Protocol.

The service codes against ``RunStore``; ``service.storage.sql.SqlRunStore`` implements it on SQLite
and Postgres.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from service.storage.tables import NodeRun, Run, RunEvent

ACTIVE = ("queued", "running")
TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class NodeEventWrite:
    """One engine node event to persist: the node-run row change plus its stream event."""

    type: str  # node_started | node_completed | node_failed
    activation_id: str
    node: str
    status: str  # running | succeeded | failed
    attempt: int
    parents: Sequence[str]
    started_at: datetime
    finished_at: datetime | None
    duration_ms: float | None
    update: dict[str, Any] | None
    goto: list[Any] | None
    error: dict[str, Any] | None
    data: dict[str, Any]


@dataclass(frozen=True)
class LeaseRenewal:
    """The outcome of one lease heartbeat of a process."""

    owned: frozenset[str]  # active runs whose lease we hold (just extended)
    cancel_requested: frozenset[str]  # those of them a client asked to cancel


def recovery_limit_error(
    in_flight: Sequence[tuple[str, str]], attempts: int, max_attempts: int
) -> dict[str, Any]:
    """The error of a run failed because its process kept dying (``in_flight``: run id, node)."""
    if in_flight:
        runs = ", ".join(f"{node!r} (node run {rid})" for rid, node in in_flight)
        where = f"while node {runs} was in flight"
    else:
        where = "between node runs"
    return {
        "type": "RecoveryLimitExceeded",
        "message": (
            f"the process running this run died {attempts} times in a row {where}, without "
            f"progress in between; gave up after {max_attempts} recovery attempts "
            f"(GRAPHFLOW_MAX_RECOVERY_ATTEMPTS={max_attempts})"
        ),
        "node": in_flight[0][1] if in_flight else None,
    }


class RunStore(Protocol):
    """What the service needs from storage."""

    def ping(self) -> None: ...
    def close(self) -> None: ...
    def create_run(
        self,
        *,
        run_id: str,
        graph: str,
        input: dict[str, Any],
        max_concurrent: int | None,
        idempotency_key: str | None,
        owner_id: str,
        lease_seconds: float,
    ) -> tuple[Run, bool]: ...
    def get_run(self, run_id: str) -> Run | None: ...
    def get_run_by_idempotency_key(self, key: str) -> Run | None: ...
    def node_runs(self, run_id: str) -> list[NodeRun]: ...
    def list_runs(
        self,
        *,
        graph: str | None,
        status: str | None,
        limit: int,
        before: tuple[datetime, str] | None,
    ) -> list[Run]: ...
    def claim_run(self, run_id: str, owner_id: str, lease_seconds: float) -> Run | None: ...
    def record_node_event(
        self, run_id: str, write: NodeEventWrite, owner_id: str | None = None
    ) -> int: ...
    def finish_run(
        self,
        run_id: str,
        status: str,
        *,
        output: dict[str, Any] | None,
        error: dict[str, Any] | None,
        owner_id: str | None = None,
    ) -> int | None: ...
    def cancel_queued(self, run_id: str) -> bool: ...
    def request_cancel(self, run_id: str) -> None: ...
    def renew_leases(self, owner_id: str, lease_seconds: float) -> list[str]: ...
    def heartbeat(self, owner_id: str, lease_seconds: float) -> LeaseRenewal: ...
    def release_leases(self, owner_id: str) -> None: ...
    def expired_runs(self, exclude_owner: str | None = None) -> list[str]: ...
    def take_over(
        self, run_id: str, owner_id: str, lease_seconds: float, max_attempts: int
    ) -> Run | None: ...
    def journal(self, run_id: str) -> list[dict[str, Any]]: ...
    def events_after(self, run_id: str, after: int, limit: int = 500) -> list[RunEvent]: ...
