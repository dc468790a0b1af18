"""The service's layers import one way: api -> runtime -> storage; the engine never the service."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Each package may not import the packages listed for it.
FORBIDDEN = {
    "service/storage": ("service.api", "service.runtime", "service.app", "service.cli"),
    "service/runtime": ("service.api", "service.app", "service.cli"),
    "service/api": ("service.app", "service.cli"),
    "service/webhooks": ("service.api", "service.runtime", "service.app", "service.cli"),
    "graphflow_core": ("service", "workflows"),
}


def imported_modules(path: Path) -> set[str]:
    """Absolute module names ``path`` imports (``from x import y`` counts as ``x`` and ``x.y``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_the_layers_above_it(package: str) -> None:
    bad = FORBIDDEN[package]
    offenders = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in imported_modules(path)
        if any(name == b or name.startswith(f"{b}.") for b in bad)
    }
    assert not offenders, sorted(offenders)
