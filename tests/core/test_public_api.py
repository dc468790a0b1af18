"""The public surface: a sorted, complete `__all__`, mirrored by the `graphflow` alias."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import graphflow_core

REPO_ROOT = Path(__file__).resolve().parents[2]
API_DOC = REPO_ROOT / "docs" / "engine-api.md"

DOCUMENTED = [
    "StateGraph",
    "CompiledGraph",
    "Command",
    "Send",
    "RetryPolicy",
    "NodeSpec",
    "NodeEvent",
    "EventKind",
    "RunCompleted",
    "NodeRecord",
    "GraphFlowError",
    "GraphValidationError",
    "InvalidRouteError",
    "InvalidNodeResultError",
    "NodeError",
    "NodeTimeoutError",
    "RecursionLimitError",
    "RunCancelledError",
]


def test_all_is_sorted_and_without_duplicates():
    names = list(graphflow_core.__all__)
    assert names == sorted(names)
    assert len(names) == len(set(names))


def test_every_name_in_all_is_importable():
    for name in graphflow_core.__all__:
        assert hasattr(graphflow_core, name), name
    namespace: dict[str, object] = {}
    exec("from graphflow_core import *", namespace)
    assert set(graphflow_core.__all__) <= set(namespace)


def test_every_documented_name_is_exported():
    doc = API_DOC.read_text(encoding="utf-8")
    for name in DOCUMENTED:
        assert re.search(rf"\b{name}\b", doc), f"{name} no longer in the API doc"
        assert name in graphflow_core.__all__, name


def _public_definitions():
    """(module, name, object) of each public class/function defined in a submodule."""
    found = []
    for info in pkgutil.walk_packages(graphflow_core.__path__, prefix="graphflow_core."):
        module = importlib.import_module(info.name)
        if any(part.startswith("_") for part in info.name.split(".")[1:]):
            continue
        for name, obj in vars(module).items():
            if name.startswith("_"):
                continue
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            found.append((module.__name__, name, obj))
    return found


def _api_listing():
    """The fenced API listing at the top of docs/engine-api.md."""
    doc = API_DOC.read_text(encoding="utf-8")
    match = re.search(r"```python\n(.*?)```", doc, re.S)
    assert match, "docs/engine-api.md has no ```python API listing"
    return match.group(1)


def _named_in_listing(name, obj, listing):
    # Classes count wherever they are named; functions only where shown as a call,
    # so that prose words such as 'merge' do not drag internal helpers into __all__.
    if inspect.isclass(obj):
        return re.search(rf"\b{re.escape(name)}\b", listing) is not None
    return re.search(rf"(?<![.\w]){re.escape(name)}\(", listing) is not None


def test_public_definitions_named_in_the_api_doc_are_in_all():
    listing = _api_listing()
    definitions = _public_definitions()
    assert definitions, "graphflow_core has no submodules with public definitions"
    missing = [
        f"{module}.{name}"
        for module, name, obj in definitions
        if _named_in_listing(name, obj, listing) and name not in graphflow_core.__all__
    ]
    assert missing == []


def test_graphflow_alias_module_mirrors_graphflow_core():
    import graphflow

    assert graphflow.__all__ == sorted([*graphflow_core.__all__, "workflow"])
    for name in graphflow_core.__all__:
        assert getattr(graphflow, name) is getattr(graphflow_core, name), name
    namespace: dict[str, object] = {}
    exec("from graphflow import StateGraph, Command", namespace)
    assert namespace["StateGraph"] is graphflow_core.StateGraph
    assert namespace["Command"] is graphflow_core.Command
