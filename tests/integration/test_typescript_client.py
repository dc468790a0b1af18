"""A TypeScript client generated from /openapi.json by @hey-api/openapi-ts type-checks.

The document is built in-process; ``sdk/typescript`` is copied beside it, its pinned tools are
installed from the npm registry (npm's own cache keeps repeated runs fast), the client is
generated, and ``sdk/typescript/check.ts``, which calls the operations and reads their fields,
must pass ``tsc --strict``. Without Node.js and npm the tests are skipped; an npm install that
fails (the registry out of reach, say) fails them, since CI has the registry.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, make_settings

pytestmark = pytest.mark.slow

SDK = ROOT / "sdk" / "typescript"

# One call that is right and one that is wrong: only the second line may fail.
BAD_FORK = """\
import { forkRun } from './src/client';
await forkRun({ path: { run_id: 'r' }, body: { from_node_run: '1' } });
await forkRun({ path: { run_id: 'r' }, body: { from_node_run: 5 } });
"""


def _run(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, npm_config_update_notifier="false")
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def _camel(operation_id: str) -> str:
    """``resume_run`` -> ``resumeRun``, the name openapi-ts gives the operation's function."""
    return re.sub(r"_(\w)", lambda match: match[1].upper(), operation_id)


def _openapi_document(tmp_path: Path) -> dict[str, object]:
    from fastapi.testclient import TestClient

    from service.app import create_app

    settings = make_settings(f"sqlite:///{tmp_path / 'graphflow.db'}")
    with TestClient(create_app(settings)) as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200, response.text
    document: dict[str, object] = response.json()
    return document


@pytest.fixture(scope="module")
def sdk_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of ``sdk/typescript`` with its tools installed and the client generated."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip(
            "the TypeScript client check needs Node.js and npm (apt-get install nodejs npm)"
        )
    tmp = tmp_path_factory.mktemp("typescript_client")
    sdk = tmp / "sdk"
    shutil.copytree(SDK, sdk, ignore=shutil.ignore_patterns("node_modules", "src"))
    (sdk / "openapi.json").write_text(json.dumps(_openapi_document(tmp)))

    installed = _run(["npm", "install", "--no-audit", "--no-fund"], sdk, timeout=300)
    if installed.returncode != 0:
        pytest.fail(f"npm install failed (is the npm registry reachable?)\n{_output(installed)}")
    generated = _run(["npx", "--no", "--", "openapi-ts", "-i", "openapi.json"], sdk, timeout=120)
    assert generated.returncode == 0, _output(generated)
    return sdk


def test_generated_sdk_has_a_function_for_every_operation(sdk_dir: Path) -> None:
    document = json.loads((sdk_dir / "openapi.json").read_text())
    operation_ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    sdk = (sdk_dir / "src" / "client" / "sdk.gen.ts").read_text()
    missing = [op_id for op_id in operation_ids if f"export const {_camel(op_id)} = " not in sdk]
    assert operation_ids and not missing, missing


def test_check_ts_passes_tsc_strict(sdk_dir: Path) -> None:
    checked = _run(["npx", "--no", "--", "tsc", "--strict", "-p", "."], sdk_dir, timeout=120)
    assert checked.returncode == 0, _output(checked)


def test_a_wrongly_typed_call_fails_tsc_strict(sdk_dir: Path) -> None:
    (sdk_dir / "bad.ts").write_text(BAD_FORK)
    (sdk_dir / "tsconfig.bad.json").write_text(
        json.dumps({"extends": "./tsconfig.json", "include": ["bad.ts"]})
    )
    checked = _run(
        ["npx", "--no", "--", "tsc", "--strict", "-p", "tsconfig.bad.json"], sdk_dir, timeout=120
    )
    errors = [line for line in checked.stdout.splitlines() if ": error TS" in line]
    assert checked.returncode != 0, _output(checked)
    assert len(errors) == 1 and errors[0].startswith("bad.ts(3,"), _output(checked)
    assert "'number' is not assignable to type 'string'" in checked.stdout, _output(checked)
