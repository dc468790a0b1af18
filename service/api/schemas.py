"""Pydantic models of the HTTP API (separate from the SQL tables in ``models``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.storage.records import DeliveryStatus, NodeRunStatus, RunStatus


class RunCreate(BaseModel):
    """Body of ``POST /graphs/{name}/runs``."""

    model_config = ConfigDict(extra="forbid")

    input: dict[str, Any] = Field(description="Initial state of the graph (a JSON object).")
    max_concurrent: int | None = Field(
        default=None, ge=1, le=1000, description="Cap on nodes running at once for this run."
    )
    webhook: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^[hH][tT][tT][pP][sS]?://",
        json_schema_extra={"format": "uri"},
        description=(
            "An http(s) URL that receives the run's summary (POST, signed) when the run ends "
            "or is interrupted. Private, loopback and link-local addresses are refused unless "
            "the server allows their host (GRAPHFLOW_WEBHOOK_ALLOW_HOSTS)."
        ),
    )


class ResumeValues(BaseModel):
    """Body of ``POST /runs/{id}/resume``: a value for each of some waiting interrupts."""

    model_config = ConfigDict(extra="forbid")

    values: dict[str, Any] = Field(
        min_length=1,
        description="Values by interrupt id (the waiting node run's id for its first interrupt).",
    )


class ResumeValue(BaseModel):
    """Body of ``POST /runs/{id}/resume`` when exactly one node waits: its value."""

    model_config = ConfigDict(extra="forbid")

    value: Any = Field(description="The value; null is a value.")


ResumeRequest = ResumeValues | ResumeValue


class ForkRequest(BaseModel):
    """Body of ``POST /runs/{id}/fork``."""

    model_config = ConfigDict(extra="forbid")

    from_node_run: str = Field(
        min_length=1,
        max_length=1000,
        description="The node run to run again, with everything after it; node runs that "
        "completed before it are reused.",
    )
    input_patch: dict[str, Any] = Field(
        default_factory=dict,
        description="Top-level keys that replace the source run's input (checked against the "
        "graph's input schema).",
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


class InterruptPublic(BaseModel):
    id: str = Field(description="The key of its value in a resume.")
    node_run_id: str
    node: str
    payload: Any = Field(description="What the node asked, as it passed it to interrupt().")


class WebhookDeliveryPublic(BaseModel):
    id: int
    event: str = Field(description="The run event it reports: run_succeeded, run_interrupted...")
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None = Field(description="When a pending delivery is tried.")
    delivered_at: datetime | None
    created_at: datetime


class WebhookPublic(BaseModel):
    url: str
    deliveries: list[WebhookDeliveryPublic]


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
    interrupts: list[InterruptPublic] | None = Field(
        default=None, description="What an interrupted run waits for (resume with their ids)."
    )
    webhook: WebhookPublic | None = None


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
