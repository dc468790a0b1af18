"""Settings from the environment."""

from __future__ import annotations

import pytest

from service.settings import Settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("GRAPHFLOW_DATABASE_URL", "GRAPHFLOW_WORKFLOWS"):
        monkeypatch.delenv(key, raising=False)
    s = Settings()
    assert s.database_url == "sqlite:///./graphflow.db"
    assert s.max_body_bytes == 10 * 1024 * 1024 and s.sse_keepalive_seconds == 15
    assert s.workflow_packages == ["workflows"]


def test_env_prefix_and_comma_separated_workflows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHFLOW_WORKFLOWS", "pkg_a, pkg_b,,workflows")
    monkeypatch.setenv("GRAPHFLOW_LEASE_SECONDS", "9")
    s = Settings()
    assert s.workflows == ["pkg_a", "pkg_b", "workflows"]
    assert s.workflow_packages == ["workflows", "pkg_a", "pkg_b"]
    assert s.lease_seconds == 9 and s.heartbeat_interval == 3
