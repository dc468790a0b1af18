"""``schemathesis run --checks all``, the command line as a user runs it, against a live
server: every operation, every check, every phase (coverage, fuzzing, stateful), 0 failures.

The project's ``schemathesis.toml`` is the only configuration: see it for the one exception
(the opaque list cursor). ``tests/service/api/test_fuzz.py`` fuzzes in-process with real
graph names and run ids as well.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT, LiveServer

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 20


def test_schemathesis_with_every_check_finds_no_failures(
    database_url: str, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = start_server(
        database_url,
        GRAPHFLOW_RUN_WAIT_TIMEOUT="0.2",
        GRAPHFLOW_WEBHOOK_SECRET="fuzz-secret",
        GRAPHFLOW_WEBHOOK_ALLOW_HOSTS="127.0.0.1",
    )
    cli = Path(sys.executable).parent / "st"
    done = subprocess.run(
        [
            str(cli),
            "--config-file",
            str(ROOT / "schemathesis.toml"),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(EXAMPLES_PER_OPERATION),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "Selected: 15/15" in report and "Tested: 15" in report, report
    counts = re.search(r"(\d+) generated, (\d+) passed", report)
    assert counts is not None and counts[1] == counts[2] and int(counts[1]) > 500, report
    for phase in ("Coverage", "Fuzzing", "Stateful"):  # each ran, none failed
        assert f"✅  {phase}" in report, report
