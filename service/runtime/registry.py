"""The workflow registry: graphs registered with ``@workflow`` and found by ``discover``.

A workflow is a zero-argument factory returning a ``StateGraph`` or ``CompiledGraph``::

    @workflow("pipeline", input_model=PipelineInput)
    def create_pipeline() -> StateGraph: ...

``discover(["workflows", "my_pkg"])`` imports every module of those packages (so the decorators
run), compiles each factory once and returns the workflows by name. This is how users add graphs
from their own package: ``GRAPHFLOW_WORKFLOWS=my_pkg`` without editing this project.

Every workflow has a ``version``: the one its decorator names, or else ``graph_fingerprint`` of
its compiled structure. A run records the version it started on; the runner refuses to resume a
run on another version unless the workflow says ``on_version_change="resume"``.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import pkgutil
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args

from pydantic import BaseModel

from graphflow_core import CompiledGraph, StateGraph
from service.errors import ServiceError

__all__ = [
    "RegisteredWorkflow",
    "VersionChangePolicy",
    "WorkflowRegistryError",
    "discover",
    "graph_fingerprint",
    "workflow",
]

Factory = Callable[[], StateGraph | CompiledGraph]
F = TypeVar("F", bound=Factory)
# What the runner does with a run whose graph version changed since it started: fail it (a
# person retries or forks it deliberately), or resume it on the new version.
VersionChangePolicy = Literal["fail", "resume"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# An explicit version: printable, short enough to show and to store with every run.
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+:-]{0,63}$")


class WorkflowRegistryError(ServiceError):
    """A workflow could not be registered, imported or compiled; the message names the culprit."""


@dataclass(frozen=True)
class _Entry:
    name: str
    factory: Factory
    description: str
    input_model: type[BaseModel] | None
    version: str | None
    on_version_change: VersionChangePolicy

    @property
    def origin(self) -> str:
        return f"{self.factory.__module__}.{self.factory.__qualname__}"


_registry: dict[str, _Entry] = {}


def graph_fingerprint(graph: CompiledGraph) -> str:
    """A short, stable fingerprint of a graph's structure: 12 hex digits of a SHA-256.

    It covers what a resumed run's journal depends on: the node names with their declared
    destinations, the edges in their order (an edge's position among its source's routes is
    part of the node run ids), the entry point and the reducers by name. It leaves out node
    functions and policies (retries, timeouts): changing those keeps the version. Equal graphs
    give equal fingerprints in every process and on every compile.
    """
    structure = {
        "nodes": sorted(
            [spec.name, None if spec.destinations is None else list(spec.destinations)]
            for spec in graph.nodes
        ),
        "edges": [list(edge) for edge in graph.edges],
        "entry_point": graph.entry_point,
        "reducers": sorted(graph.reducers.items()),
    }
    canonical = json.dumps(structure, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class RegisteredWorkflow:
    """A compiled, named workflow with its optional pydantic input model and its version.

    ``version`` defaults to ``graph_fingerprint(graph)``; ``on_version_change`` says whether a
    run that started on another version may resume on this one (``"resume"``) or fails
    (``"fail"``, the default).
    """

    name: str
    description: str
    graph: CompiledGraph
    input_model: type[BaseModel] | None = None
    version: str = ""
    on_version_change: VersionChangePolicy = "fail"

    def __post_init__(self) -> None:
        if not self.version:
            # A frozen dataclass: the default is filled in once, here.
            object.__setattr__(self, "version", graph_fingerprint(self.graph))

    @property
    def input_schema(self) -> dict[str, Any] | None:
        """The JSON schema of the input model, or None when the workflow declares none."""
        return None if self.input_model is None else self.input_model.model_json_schema()

    def validate_input(self, data: dict[str, Any]) -> dict[str, Any]:
        """Return ``data`` validated by the input model, defaults filled in, as JSON-ready values.

        Extra keys survive only if the model allows them (``extra="allow"``). Without an input
        model, a copy of ``data`` is returned. Raises ``pydantic.ValidationError`` on bad input.
        """
        if self.input_model is None:
            return dict(data)
        return self.input_model.model_validate(data).model_dump(mode="json")


def workflow(
    name: str,
    *,
    description: str | None = None,
    input_model: type[BaseModel] | None = None,
    version: str | None = None,
    on_version_change: VersionChangePolicy = "fail",
) -> Callable[[F], F]:
    """Register the decorated zero-argument graph factory as workflow ``name``.

    The description defaults to the first line of the factory's docstring. ``version`` names
    the graph's version (default: its structure's fingerprint, ``graph_fingerprint``);
    ``on_version_change="resume"`` lets runs that started on another version resume on this
    one instead of failing. Returns the factory unchanged. Raises ``WorkflowRegistryError`` if
    ``name`` or ``version`` is not valid or ``name`` is already registered by another factory
    (naming both modules), ``TypeError`` if ``input_model`` is not a pydantic model class, and
    ``ValueError`` for an ``on_version_change`` other than ``"fail"`` or ``"resume"``.
    """
    if not _NAME.match(name):
        raise WorkflowRegistryError(f"invalid workflow name {name!r}: use letters, digits, _.-")
    if version is not None and not (isinstance(version, str) and _VERSION.match(version)):
        raise WorkflowRegistryError(
            f"invalid version {version!r} of workflow {name!r}: use 1 to 64 letters, digits "
            "and _.+:- (starting with a letter or digit)"
        )
    if on_version_change not in get_args(VersionChangePolicy):
        raise ValueError(
            f"on_version_change of workflow {name!r} must be 'fail' or 'resume', "
            f"not {on_version_change!r}"
        )
    if input_model is not None and not (
        isinstance(input_model, type) and issubclass(input_model, BaseModel)
    ):
        raise TypeError(f"input_model of workflow {name!r} must be a pydantic BaseModel subclass")

    def register(factory: F) -> F:
        doc = (inspect.getdoc(factory) or "").strip()
        entry = _Entry(
            name,
            factory,
            description or (doc.splitlines()[0] if doc else ""),
            input_model,
            version,
            on_version_change,
        )
        existing = _registry.get(name)
        # Re-importing the same module (e.g. after a failed discover) re-registers harmlessly.
        if existing is not None and existing.origin != entry.origin:
            raise WorkflowRegistryError(
                f"workflow {name!r} is registered twice: by {existing.factory.__module__} "
                f"({existing.origin}) and by {factory.__module__} ({entry.origin})"
            )
        _registry[name] = entry
        return factory

    return register


def _import_all(package: str) -> set[str]:
    """Import ``package`` and all its submodules; return the imported module names."""
    try:
        root = importlib.import_module(package)
    except Exception as exc:
        raise WorkflowRegistryError(f"cannot import workflow package {package!r}: {exc}") from exc
    names = {root.__name__}
    if not hasattr(root, "__path__"):
        return names

    def onerror(module: str) -> None:
        exc = sys.exc_info()[1]
        raise WorkflowRegistryError(
            f"cannot import workflow module {module!r} (package {package!r}): {exc}"
        ) from exc

    for info in pkgutil.walk_packages(root.__path__, prefix=f"{root.__name__}.", onerror=onerror):
        try:
            importlib.import_module(info.name)
        except WorkflowRegistryError:
            raise
        except Exception as exc:
            raise WorkflowRegistryError(
                f"cannot import workflow module {info.name!r} (package {package!r}): {exc}"
            ) from exc
        names.add(info.name)
    return names


def _compile(entry: _Entry) -> RegisteredWorkflow:
    try:
        graph = entry.factory()
        if isinstance(graph, StateGraph):
            graph = graph.compile()
    except Exception as exc:
        raise WorkflowRegistryError(
            f"workflow {entry.name!r} ({entry.origin}) failed to build: {exc}"
        ) from exc
    if not isinstance(graph, CompiledGraph):
        raise WorkflowRegistryError(
            f"workflow {entry.name!r} ({entry.origin}) returned {type(graph).__name__}, "
            "expected StateGraph or CompiledGraph"
        )
    return RegisteredWorkflow(
        entry.name,
        entry.description,
        graph,
        entry.input_model,
        version=entry.version or "",
        on_version_change=entry.on_version_change,
    )


def discover(packages: Sequence[str]) -> dict[str, RegisteredWorkflow]:
    """Import ``packages`` with all their submodules and compile the workflows they register.

    Returns the workflows defined in those modules, by name, sorted by name; each factory is
    called once per call. Raises ``WorkflowRegistryError`` naming the package or module that
    failed to import, the workflow whose factory failed, or both modules of a duplicate name.
    """
    if isinstance(packages, str):
        raise TypeError("discover() takes a sequence of package names, not a string")
    modules: set[str] = set()
    for package in packages:
        modules |= _import_all(package)
    entries = sorted(
        (e for e in _registry.values() if e.factory.__module__ in modules), key=lambda e: e.name
    )
    return {entry.name: _compile(entry) for entry in entries}
