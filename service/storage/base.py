"""The run-store seam: the ``RunStore`` Protocol (its records are in ``records``).

The service codes against ``RunStore``; ``service.storage.sql.SqlRunStore`` implements it on SQLite
and Postgres.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from service.storage.continuations import Owner
from service.storage.filters import RunFilter
from service.storage.records import (
    JournalBatch,
    JournalResult,
    LeaseRenewal,
    NodeEventWrite,
    RunError,
    RunStatus,
)
from service.storage.tables import NodeRun, Run, RunEvent

__all__ = ["RunStore"]


class RunStore(Protocol):
    """What the service needs from storage."""

    def ping(self, timeout: float | None = None) -> None: ...
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
        run_metadata: dict[str, Any] | None = None,
        tags: list[str] | None = None,
    ) -> tuple[Run, bool]: ...
    def get_run(self, run_id: str) -> Run | None: ...
    def get_run_by_idempotency_key(self, key: str) -> Run | None: ...
    def node_runs(self, run_id: str) -> list[NodeRun]: ...
    def count_runs_by_status(self) -> dict[RunStatus, int]: ...
    def list_runs(
        self, where: RunFilter, *, limit: int, before: tuple[datetime, str] | None = None
    ) -> list[Run]: ...
    def claim_run(self, run_id: str, owner_id: str, lease_seconds: float) -> Run | None: ...
    def record_node_event(
        self, run_id: str, write: NodeEventWrite, owner_id: str | None = None
    ) -> int: ...
    def write_journal(self, batch: JournalBatch) -> JournalResult: ...
    def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        output: dict[str, Any] | None,
        error: RunError | None,
        owner_id: str | None = None,
    ) -> int | None: ...
    def cancel_queued(self, run_id: str) -> bool: ...
    def time_out_overdue(
        self, run_ids: Sequence[str] | None = None, limit: int = 500
    ) -> list[str]: ...
    def request_cancel(self, run_id: str) -> None: ...
    def claim_next(self, owner_id: str, lease_seconds: float, limit: int) -> list[Run]: ...
    def recovery_turn(self) -> contextlib.AbstractContextManager[bool]: ...
    def renew_leases(self, owner_id: str, lease_seconds: float) -> list[str]: ...
    def heartbeat(self, owner_id: str, lease_seconds: float) -> LeaseRenewal: ...
    def release_leases(self, owner_id: str) -> None: ...
    def expired_runs(self, exclude_owner: str | None = None) -> list[str]: ...
    def take_over(
        self, run_id: str, owner_id: str, lease_seconds: float, max_attempts: int
    ) -> Run | None: ...
    def journal(self, run_id: str) -> list[dict[str, Any]]: ...
    def prior_attempts(self, run_id: str) -> dict[str, int]: ...
    def webhook_deliveries(self, run_id: str) -> list[dict[str, Any]]: ...
    def resume_run(
        self, run_id: str, values: Mapping[str, Any] | None, value: Any, owner: Owner
    ) -> Run: ...
    def retry_run(self, run_id: str, owner: Owner, graph_version: str | None = None) -> Run: ...
    def fork_run(
        self,
        source_id: str,
        from_node_run: str,
        run_input: dict[str, Any],
        new_id: str,
        owner: Owner,
        graph_version: str | None = None,
    ) -> Run: ...
    def events_after(self, run_id: str, after: int, limit: int = 500) -> list[RunEvent]: ...
