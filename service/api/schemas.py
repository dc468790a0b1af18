"""Pydantic models of the HTTP API (separate from the SQL tables in ``models``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.storage.records import NodeRunStatus, RunStatus


class RunCreate(BaseModel):
    """Body of ``POST /graphs/{name}/runs``."""

    model_config = ConfigDict(extra="forbid")

    input: dict[str, Any] = Field(description="Initial state of the graph (a JSON object).")
    max_concurrent: int | None = Field(
        default=None, ge=1, le=1000, description="Cap on nodes running at once for this run."
    )


class RunErrorPublic(BaseModel):
    type: str
    message: str
    node: str | None = None


class NodeRunPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="The engine's activation id of this node run, e.g. '0.1'.")
    node: str
    status: NodeRunStatus
    attempt: int
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    error: RunErrorPublic | None = None


class RunSummaryPublic(BaseModel):
    id: str
    graph: str
    status: RunStatus
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    error: RunErrorPublic | None


class RunPublic(RunSummaryPublic):
    input: dict[str, Any]
    output: dict[str, Any] | None
    nodes: list[NodeRunPublic]


class RunList(BaseModel):
    items: list[RunSummaryPublic]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page.")


class RetryPublic(BaseModel):
    max_attempts: int | None = None
    initial_delay: float | None = None
    backoff: float | None = None
    max_delay: float | None = None
    jitter: bool | None = None
    retry_on: list[str] = Field(default_factory=list)


class NodePublic(BaseModel):
    name: str
    destinations: list[str] | None = None
    retry: RetryPublic | None = None
    timeout: float | None = None
    is_async: bool = False


class EdgePublic(BaseModel):
    source: str
    target: str


class GraphSummary(BaseModel):
    name: str
    description: str
    node_count: int
    has_input_schema: bool


class GraphDetail(BaseModel):
    name: str
    description: str
    nodes: list[NodePublic]
    edges: list[EdgePublic]
    entry_point: str
    reducers: dict[str, str]
    input_schema: dict[str, Any] | None
    mermaid: str


class HealthPublic(BaseModel):
    status: str


class ErrorPublic(BaseModel):
    """The one error shape: ``detail`` is a message or a list of validation errors."""

    detail: Any
