"""A Python client generated from /openapi.json drives a live server."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer

pytestmark = pytest.mark.slow


@pytest.fixture
def generated_client(tmp_path: Path, live_server: LiveServer) -> Iterator[Any]:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(httpx.get(f"{live_server.url}/openapi.json").json()))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"post_hooks": []}))
    out = tmp_path / "gf_client"
    cli = Path(sys.executable).parent / "openapi-python-client"
    result = subprocess.run(
        [
            str(cli),
            "generate",
            "--path",
            str(spec),
            "--output-path",
            str(out),
            "--meta",
            "none",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("gf_client")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "gf_client" or m.startswith("gf_client.")]:
            del sys.modules[name]


def test_generated_client_creates_polls_and_lists_runs(
    generated_client: Any, live_server: LiveServer
) -> None:
    from importlib import import_module

    create_run = import_module("gf_client.api.runs.create_run")
    get_run = import_module("gf_client.api.runs.get_run")
    list_runs = import_module("gf_client.api.runs.list_runs")
    models = import_module("gf_client.models")

    with generated_client.Client(base_url=live_server.url) as client:
        body = models.RunCreate(input_=models.RunCreateInput.from_dict({"x": 4}))
        created = create_run.sync_detailed(name="three_step", client=client, body=body)
        assert created.status_code == 202
        run = created.parsed
        deadline = time.monotonic() + 15
        while run.status not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
            run = get_run.sync(run_id=run.id, client=client)
        assert run.status == "succeeded"
        assert run.output.to_dict()["x"] == 120
        assert [n.node for n in run.nodes] == ["a", "b", "c"]
        page = list_runs.sync(client=client, limit=10)
        assert [item.id for item in page.items] == [run.id]
