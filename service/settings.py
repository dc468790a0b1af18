"""Service configuration, read from ``GRAPHFLOW_*`` environment variables."""

from __future__ import annotations

import os
import socket
import uuid
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Settings(BaseSettings):
    """All knobs of the HTTP service; every field can be set as ``GRAPHFLOW_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="GRAPHFLOW_", extra="ignore")

    database_url: str = "sqlite:///./graphflow.db"
    # Extra workflow packages (comma separated in the environment); ``workflows`` always loads.
    workflows: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    run_wait_timeout: float = Field(default=30.0, gt=0)
    max_concurrent_runs: int = Field(default=8, ge=1)
    sse_keepalive_seconds: float = Field(default=15.0, gt=0)
    lease_seconds: float = Field(default=30.0, gt=0)
    heartbeat_seconds: float | None = Field(default=None, gt=0)  # default: lease_seconds / 3
    max_recovery_attempts: int = Field(default=3, ge=0)
    owner_id: str = Field(default_factory=_default_owner_id)
    db_pool_size: int = Field(default=10, ge=1)
    shutdown_grace_seconds: float = Field(default=5.0, ge=0)

    @field_validator("workflows", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def heartbeat_interval(self) -> float:
        return self.heartbeat_seconds or self.lease_seconds / 3

    @property
    def workflow_packages(self) -> list[str]:
        """Packages handed to the registry: ``workflows`` first, then the configured extras."""
        return ["workflows", *[p for p in self.workflows if p != "workflows"]]
