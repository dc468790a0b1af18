"""Service configuration, read from ``GRAPHFLOW_*`` environment variables."""

from __future__ import annotations

import os
import socket
import uuid
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Role(StrEnum):
    """What a process does: ``all`` serves the API and executes runs (``graphflow serve``),
    ``api`` only serves HTTP, ``worker`` only executes runs (both need Postgres)."""

    ALL = "all"
    API = "api"
    WORKER = "worker"

    @property
    def executes(self) -> bool:
        return self != Role.API


class Settings(BaseSettings):
    """All knobs of the HTTP service; every field can be set as ``GRAPHFLOW_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="GRAPHFLOW_", extra="ignore")

    database_url: str = "sqlite:///./graphflow.db"
    role: Role = Role.ALL  # set by the command: graphflow serve | api | worker
    # Extra workflow packages (comma separated in the environment); ``workflows`` always loads.
    workflows: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    run_wait_timeout: float = Field(default=30.0, gt=0)
    max_concurrent_runs: int = Field(default=8, ge=1)
    sse_keepalive_seconds: float = Field(default=15.0, gt=0)
    # How often streams, waits and idle workers look at the database when no notification
    # came (jittered): the most a lost notification can cost.
    poll_seconds: float = Field(default=1.0, gt=0)
    # A worker touches this file after each lease renewal (its health for compose).
    health_file: str | None = None
    lease_seconds: float = Field(default=30.0, gt=0)
    heartbeat_seconds: float | None = Field(default=None, gt=0)  # default: lease_seconds / 3
    max_recovery_attempts: int = Field(default=3, ge=0)
    owner_id: str = Field(default_factory=_default_owner_id)
    db_pool_size: int = Field(default=10, ge=1)
    shutdown_grace_seconds: float = Field(default=5.0, ge=0)
    readyz_timeout_seconds: float = Field(default=5.0, gt=0)  # /readyz: 503 past it
    # Per-run caps enforced by the runner (None: no cap).
    max_node_runs: int | None = Field(default=100_000, ge=1)
    max_run_seconds: float | None = Field(default=None, gt=0)
    # Request hardening and caps (API side); each error message names its setting.
    max_json_depth: int = Field(default=64, ge=1, le=1000)
    max_active_runs: int = Field(default=1000, ge=1)  # queued + running, across processes
    max_streams: int = Field(default=100, ge=1)  # open event streams, per process
    # Security: bearer API keys (comma separated) and CORS, both off by default.
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_allow_credentials: bool = False
    # Observability: /metrics without a key even when API keys are set; JSON log lines.
    metrics_public: bool = False
    # ``graphflow worker`` serves its own /metrics (it has no API) on this port, when set.
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    worker_metrics_host: str = "127.0.0.1"
    log_format: Literal["text", "json"] = "text"
    # Webhooks: the HMAC key that signs every delivery (no webhooks without it), the hosts that
    # may be private addresses (tests, an internal receiver), and the retry schedule.
    webhook_secret: SecretStr | None = None
    webhook_allow_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_max_attempts: int = Field(default=8, ge=1, le=100)
    webhook_backoff_seconds: float = Field(default=2.0, gt=0)  # before the 2nd attempt
    webhook_max_backoff_seconds: float = Field(default=600.0, gt=0)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)  # per delivery attempt
    # Retention: finished runs older than this are deleted by a sweep every
    # ``retention_sweep_seconds`` (in processes that execute runs). None: kept forever.
    retention_seconds: float | None = Field(default=None, gt=0)
    retention_sweep_seconds: float = Field(default=300.0, gt=0)

    @field_validator("workflows", "api_keys", "cors_origins", "webhook_allow_hosts", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _no_wildcard_with_credentials(self) -> Settings:
        if "*" in self.cors_origins and self.cors_allow_credentials:
            raise ValueError(
                "GRAPHFLOW_CORS_ORIGINS='*' cannot be combined with "
                "GRAPHFLOW_CORS_ALLOW_CREDENTIALS=true: any site could make credentialed "
                "requests; list the allowed origins explicitly"
            )
        return self

    @model_validator(mode="after")
    def _split_roles_need_postgres(self) -> Settings:
        if self.role != Role.ALL and self.database_url.startswith("sqlite"):
            raise ValueError(
                f"graphflow {self.role.value} needs Postgres (GRAPHFLOW_DATABASE_URL="
                "postgresql+psycopg://...): separate API and worker processes coordinate "
                "through it. On SQLite run `graphflow serve`, which is both in one process"
            )
        return self

    @model_validator(mode="after")
    def _worker_metrics_are_public(self) -> Settings:
        if self.worker_metrics_port is not None and self.api_keys and not self.metrics_public:
            raise ValueError(
                "GRAPHFLOW_WORKER_METRICS_PORT serves a worker's metrics without an API-key "
                "check, and GRAPHFLOW_API_KEYS is set: set GRAPHFLOW_METRICS_PUBLIC=true to "
                "serve them anyway, or leave the port unset"
            )
        return self

    @property
    def heartbeat_interval(self) -> float:
        return self.heartbeat_seconds or self.lease_seconds / 3

    @property
    def workflow_packages(self) -> list[str]:
        """Packages handed to the registry: ``workflows`` first, then the configured extras."""
        return ["workflows", *[p for p in self.workflows if p != "workflows"]]
