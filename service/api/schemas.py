"""Pydantic models of the HTTP API (separate from the SQL tables in ``models``)."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
)

from service.storage.records import DeliveryStatus, NodeRunStatus, RunStatus

# The longest deadline a request may ask for (ten years): any more is a mistake, and would
# overflow date arithmetic long before it mattered.
MAX_TIMEOUT_SECONDS = 10 * 366 * 24 * 3600

# Printable text only: NUL and control characters cannot be stored in Postgres text columns.
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
# What a run's creator may attach (``RunCreate.metadata`` and ``tags``). A tag and a metadata
# key, value included, fit an index entry (``service.storage.filters``).
MAX_TAGS = 20
MAX_TAG_LENGTH = 64
MAX_METADATA_BYTES = 8 * 1024
MAX_METADATA_KEY_LENGTH = 256
Tag = Annotated[str, Field(min_length=1, max_length=MAX_TAG_LENGTH, pattern=_PRINTABLE)]
MetadataKey = Annotated[
    str, Field(min_length=1, max_length=MAX_METADATA_KEY_LENGTH, pattern=_PRINTABLE)
]

# RFC 3339, what the OpenAPI ``date-time`` format promises: pydantic alone would also take
# "0.9" or 0.9 (seconds since 1970) or a date without a time.
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def _rfc3339(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError(
            "expected a date and time with its time zone (RFC 3339), as 2026-05-01T12:00:00Z "
            "or 2026-05-01T14:00:00+02:00"
        )
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
"""A date and time with its time zone, in RFC 3339 (a 422 otherwise), in a query or a body."""


def _metadata_key_schema(schema: dict[str, Any]) -> None:
    """Say the key pattern in ``propertyNames``: pydantic writes it as ``patternProperties``,
    which leaves other keys allowed, so a client generating from the schema would send them."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "object":
            branch.pop("patternProperties", None)
            branch["propertyNames"] = {
                "minLength": 1,
                "maxLength": MAX_METADATA_KEY_LENGTH,
                "pattern": _PRINTABLE,
            }


def metadata_bytes(metadata: dict[str, Any]) -> int:
    """The size of ``metadata`` as compact UTF-8 JSON: what ``MAX_METADATA_BYTES`` bounds."""
    text = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))
    return len(text.encode("utf-8", "surrogatepass"))


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
    timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        le=MAX_TIMEOUT_SECONDS,
        description=(
            "The run's deadline, in seconds from its first start (time waiting for a person "
            "counts). Past it the run ends timed_out. At most GRAPHFLOW_MAX_RUN_SECONDS when "
            "the server sets that cap."
        ),
    )
    queue_timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        le=MAX_TIMEOUT_SECONDS,
        description=(
            "The longest the run may wait in the queue to start (counted again when a resume "
            "or retry queues it). Past it the run ends timed_out."
        ),
    )
    metadata: dict[MetadataKey, Any] | None = Field(
        default=None,
        description=(
            f"A JSON object the run keeps and returns, at most {MAX_METADATA_BYTES} bytes "
            f"(8 KiB) as compact JSON; keys of 1 to {MAX_METADATA_KEY_LENGTH} printable "
            "characters. GET /runs?metadata.<key>=<value> finds runs by a top-level value "
            "(strings as they are, other values as JSON)."
        ),
        json_schema_extra=_metadata_key_schema,
    )
    tags: list[Tag] | None = Field(
        default=None,
        max_length=MAX_TAGS,
        description=(
            f"At most {MAX_TAGS} tags of 1 to {MAX_TAG_LENGTH} printable characters "
            "(duplicates are dropped); GET /runs?tag=<tag> finds runs by them."
        ),
    )

    @field_validator("metadata")
    @classmethod
    def _metadata_fits(cls, metadata: dict[str, Any] | None) -> dict[str, Any] | None:
        if metadata is not None:
            size = metadata_bytes(metadata)
            if size > MAX_METADATA_BYTES:
                raise ValueError(
                    f"metadata is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES} "
                    "bytes (8 KiB)"
                )
        return metadata

    @field_validator("tags")
    @classmethod
    def _distinct_tags(cls, tags: list[str] | None) -> list[str] | None:
        return None if tags is None else list(dict.fromkeys(tags))


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
    graph_version: str | None = Field(
        default=None,
        description="The version of the graph the run started on (None: run before versions).",
    )
    status: RunStatus
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    error: RunErrorPublic | None
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="The metadata the run was created with."
    )
    tags: list[str] = Field(default_factory=list, description="The tags the run was created with.")


class RunPublic(RunSummaryPublic):
    input: dict[str, Any]
    output: dict[str, Any] | None
    nodes: list[NodeRunPublic]
    interrupts: list[InterruptPublic] | None = Field(
        default=None, description="What an interrupted run waits for (resume with their ids)."
    )
    webhook: WebhookPublic | None = None
    timeout_seconds: float | None = None
    queue_timeout_seconds: float | None = None
    deadline_at: datetime | None = Field(
        default=None, description="When the run times out: timeout_seconds after its first start."
    )
    queue_deadline_at: datetime | None = Field(
        default=None, description="When the run times out if it has not started by then."
    )


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
    version: str = Field(
        description="The graph's version: its registered one, or a fingerprint of its structure."
    )
    node_count: int
    has_input_schema: bool


class GraphDetail(BaseModel):
    name: str
    description: str
    version: str = Field(
        description="The graph's version: its registered one, or a fingerprint of its structure."
    )
    on_version_change: Literal["fail", "resume"] = Field(
        description="What happens to a run that started on another version when it resumes."
    )
    nodes: list[NodePublic]
    edges: list[EdgePublic]
    entry_point: str
    reducers: dict[str, str]
    input_schema: dict[str, Any] | None
    mermaid: str


# What a purge deletes (``TERMINAL``) and what a bulk cancel ends: as literals, so that the
# OpenAPI document lists exactly these (tests check they match ``service.storage.records``).
FinishedStatus = Literal["succeeded", "failed", "cancelled", "timed_out"]
CancellableStatus = Literal["queued", "running", "interrupted"]
# A status, or a list of them.
FinishedStatuses = FinishedStatus | Annotated[list[FinishedStatus], Field(min_length=1)]
CancellableStatuses = CancellableStatus | Annotated[list[CancellableStatus], Field(min_length=1)]


class RunSelection(BaseModel):
    """The runs a purge or a bulk cancel is about: those matching every field given."""

    model_config = ConfigDict(extra="forbid")

    graph: str | None = Field(
        default=None, max_length=200, pattern=_PRINTABLE, description="Runs of this graph."
    )
    tags: list[Tag] = Field(
        default_factory=list, max_length=20, description="Runs that have all these tags."
    )
    created_before: Timestamp | None = Field(
        default=None, description="Runs created before this time (with its time zone)."
    )
    dry_run: StrictBool = Field(
        default=True,
        description="Only count the matching runs (the default); false to act on them.",
    )


class PurgeRequest(RunSelection):
    """Body of ``POST /runs/purge``: delete finished runs (never queued, running or
    interrupted ones)."""

    status: FinishedStatuses | None = Field(
        default=None, description="A finished status, or several; default: all of them."
    )
    finished_before: Timestamp | None = Field(
        default=None, description="Runs that finished before this time (with its time zone)."
    )


class CancelRequest(RunSelection):
    """Body of ``POST /runs/cancel``: cancel queued, running and interrupted runs."""

    status: CancellableStatuses | None = Field(
        default=None, description="queued, running or interrupted, or several; default: all."
    )


class RunCount(BaseModel):
    """The answer of a purge or a bulk cancel."""

    count: int = Field(description="Runs deleted or cancelled; with dry_run, that would be.")


class HealthPublic(BaseModel):
    status: str


class ErrorPublic(BaseModel):
    """The one error shape: ``detail`` is a message or a list of validation errors."""

    detail: Any
