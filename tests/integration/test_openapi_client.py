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


def _settled(client: Any, run_id: Any, timeout: float = 15) -> Any:
    """The run, read through the generated client, once it is no longer queued or running."""
    get_run = importlib.import_module("gf_client.api.runs.get_run")
    deadline = time.monotonic() + timeout
    while (run := get_run.sync(run_id=run_id, client=client)).status in ("queued", "running"):
        assert time.monotonic() < deadline, run.status
        time.sleep(0.05)
    return run


def test_generated_client_creates_polls_and_lists_runs(
    generated_client: Any, live_server: LiveServer
) -> None:
    from importlib import import_module

    create_run = import_module("gf_client.api.runs.create_run")
    list_runs = import_module("gf_client.api.runs.list_runs")
    models = import_module("gf_client.models")

    with generated_client.Client(base_url=live_server.url) as client:
        body = models.RunCreate(input_=models.RunCreateInput.from_dict({"x": 4}))
        created = create_run.sync_detailed(name="three_step", client=client, body=body)
        assert created.status_code == 202
        run = _settled(client, created.parsed.id)
        assert run.status == "succeeded"
        assert run.output.to_dict()["x"] == 120
        assert [n.node for n in run.nodes] == ["a", "b", "c"]
        page = list_runs.sync(client=client, limit=10)
        assert [item.id for item in page.items] == [run.id]


def test_generated_client_resumes_retries_and_forks_runs(
    generated_client: Any, live_server: LiveServer
) -> None:
    from importlib import import_module

    spec = httpx.get(f"{live_server.url}/openapi.json").json()
    for path, codes in [
        ("/runs/{run_id}/resume", {"404", "409", "422", "429"}),
        ("/runs/{run_id}/retry", {"404", "409", "429"}),
        ("/runs/{run_id}/fork", {"404", "409", "422", "429"}),
    ]:
        responses = spec["paths"][path]["post"]["responses"]
        assert codes <= set(responses), (path, sorted(responses))
        for code in codes:
            schema = responses[code]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorPublic"}, (path, code)

    create_run = import_module("gf_client.api.runs.create_run")
    resume_run = import_module("gf_client.api.runs.resume_run")
    retry_run = import_module("gf_client.api.runs.retry_run")
    fork_run = import_module("gf_client.api.runs.fork_run")
    models = import_module("gf_client.models")
    for module in (resume_run, retry_run, fork_run):
        for name in ("sync", "sync_detailed", "asyncio", "asyncio_detailed"):
            assert callable(getattr(module, name)), (module.__name__, name)

    with generated_client.Client(base_url=live_server.url) as client:
        body = models.RunCreate(input_=models.RunCreateInput.from_dict({"topic": "tests"}))
        created = create_run.sync_detailed(name="approval", client=client, body=body)
        assert created.status_code == 202
        run = _settled(client, created.parsed.id)
        assert run.status == "interrupted"
        [waiting] = run.interrupts
        assert (waiting.node, waiting.payload["revision"]) == ("review", 0)

        # The body is typed: one value, or values by interrupt id.
        approve = models.ResumeValue(value={"approved": True})
        resumed = resume_run.sync_detailed(run_id=run.id, client=client, body=approve)
        assert resumed.status_code == 202, resumed.content
        assert isinstance(resumed.parsed, models.RunPublic) and resumed.parsed.id == run.id
        done = _settled(client, run.id)
        assert done.status == "succeeded"
        assert done.output.to_dict()["outcome"] == "published"

        conflict = retry_run.sync_detailed(run_id=run.id, client=client)
        assert conflict.status_code == 409
        assert isinstance(conflict.parsed, models.ErrorPublic)
        assert "succeeded" in conflict.parsed.detail
        by_id = models.ResumeValues(values=models.ResumeValuesValues.from_dict({waiting.id: 1}))
        again = resume_run.sync_detailed(run_id=run.id, client=client, body=by_id)
        assert again.status_code == 409 and isinstance(again.parsed, models.ErrorPublic)

        review = next(n.id for n in done.nodes if n.node == "review")
        patch = models.ForkRequestInputPatch.from_dict({"topic": "forks"})
        forked = fork_run.sync_detailed(
            run_id=run.id,
            client=client,
            body=models.ForkRequest(from_node_run=review, input_patch=patch),
        )
        assert forked.status_code == 201, forked.content
        fork = _settled(client, forked.parsed.id)
        assert fork.id != run.id and fork.status == "interrupted"  # review asks again
        assert fork.input_.to_dict()["topic"] == "forks"
        # The draft was reused from the source run, so it still speaks of the old topic.
        assert fork.interrupts[0].payload["draft"] == "A short note on tests."


def test_generated_client_tags_searches_deletes_purges_and_cancels_runs(
    generated_client: Any, live_server: LiveServer
) -> None:
    from importlib import import_module

    create_run = import_module("gf_client.api.runs.create_run")
    get_run = import_module("gf_client.api.runs.get_run")
    list_runs = import_module("gf_client.api.runs.list_runs")
    delete_run = import_module("gf_client.api.runs.delete_run")
    purge_runs = import_module("gf_client.api.runs.purge_runs")
    cancel_runs = import_module("gf_client.api.runs.cancel_runs")
    models = import_module("gf_client.models")

    def create(name: str, state: dict[str, Any], tags: list[str], **metadata: Any) -> Any:
        body = models.RunCreate(
            input_=models.RunCreateInput.from_dict(state),
            metadata=models.RunCreateMetadataType0.from_dict(metadata),
            tags=tags,
        )
        created = create_run.sync_detailed(name=name, client=client, body=body)
        assert created.status_code == 202, created.content
        return created.parsed

    with generated_client.Client(base_url=live_server.url) as client:
        done = [create("three_step", {"x": i}, ["sdk", f"n{i}"], customer=f"c{i}") for i in (1, 2)]
        slow = create("slow_chain", {"delay": 2}, ["sdk", "slow"], customer="c9")  # 16 s
        for run in done:
            assert _settled(client, run.id).status == "succeeded"
        view = get_run.sync(run_id=done[0].id, client=client)
        assert view.tags == ["sdk", "n1"]
        assert view.metadata.to_dict() == {"customer": "c1"}

        # Tags are typed query parameters; a run must have all of them.
        page = list_runs.sync(client=client, tag=["sdk", "n2"])
        assert [item.id for item in page.items] == [done[1].id]
        assert page.items[0].tags == ["sdk", "n2"]
        # metadata.<key> names cannot be declared one by one: the client's httpx sends them.
        found = client.get_httpx_client().get("/runs", params={"metadata.customer": "c9"})
        assert [item["id"] for item in found.json()["items"]] == [str(slow.id)]

        # A running run is not deleted; a finished one is, once.
        refused = delete_run.sync_detailed(run_id=slow.id, client=client)
        assert refused.status_code == 409 and isinstance(refused.parsed, models.ErrorPublic)
        assert "cancel it first" in refused.parsed.detail
        assert delete_run.sync_detailed(run_id=done[0].id, client=client).status_code == 204
        gone = delete_run.sync_detailed(run_id=done[0].id, client=client)
        assert gone.status_code == 404 and isinstance(gone.parsed, models.ErrorPublic)

        # Bulk cancel and purge count first, then act, on the same filter.
        selection = {"tags": ["sdk"], "dry_run": True}
        counted = cancel_runs.sync(client=client, body=models.CancelRequest.from_dict(selection))
        assert counted.count == 1
        assert get_run.sync(run_id=slow.id, client=client).status == "running"
        stop = models.CancelRequest.from_dict({**selection, "dry_run": False})
        assert cancel_runs.sync(client=client, body=stop).count == 1
        assert _settled(client, slow.id).status == "cancelled"

        purge = models.PurgeRequest.from_dict({**selection, "status": ["succeeded"]})
        assert purge_runs.sync(client=client, body=purge).count == 1
        purge = models.PurgeRequest.from_dict({**selection, "dry_run": False})
        assert purge_runs.sync(client=client, body=purge).count == 2  # n2 and the cancelled
        assert list_runs.sync(client=client, tag=["sdk"]).items == []
