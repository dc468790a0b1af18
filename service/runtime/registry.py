"""The workflow registry: graphs registered with ``@workflow`` and found by ``discover``.

A workflow is a zero-argument factory returning a ``StateGraph`` or ``CompiledGraph``::

    @workflow("pipeline", input_model=PipelineInput)
    def create_pipeline() -> StateGraph: ...

``discover(["workflows", "my_pkg"])`` imports every module of those packages (so the decorators
run), compiles each factory once and returns the workflows by name. This is how users add graphs
from their own package: ``GRAPHFLOW_WORKFLOWS=my_pkg`` without editing this project.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from graphflow_core import CompiledGraph, StateGraph
from service.errors import ServiceError

__all__ = ["RegisteredWorkflow", "WorkflowRegistryError", "discover", "workflow"]

Factory = Callable[[], StateGraph | CompiledGraph]
F = TypeVar("F", bound=Factory)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class WorkflowRegistryError(ServiceError):
    """A workflow could not be registered, imported or compiled; the message names the culprit."""


@dataclass(frozen=True)
class _Entry:
    name: str
    factory: Factory
    description: str
    input_model: type[BaseModel] | None

    @property
    def origin(self) -> str:
        return f"{self.factory.__module__}.{self.factory.__qualname__}"


_registry: dict[str, _Entry] = {}


@dataclass(frozen=True)
class RegisteredWorkflow:
    """A compiled, named workflow with its optional pydantic input model."""

    name: str
    description: str
    graph: CompiledGraph
    input_model: type[BaseModel] | None = None

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
    name: str, *, description: str | None = None, input_model: type[BaseModel] | None = None
) -> Callable[[F], F]:
    """Register the decorated zero-argument graph factory as workflow ``name``.

    The description defaults to the first line of the factory's docstring. Returns the factory
    unchanged. Raises ``WorkflowRegistryError`` if ``name`` is not a valid name or is already
    registered by another factory (naming both modules), and ``TypeError`` if ``input_model`` is
    not a pydantic model class.
    """
    if not _NAME.match(name):
        raise WorkflowRegistryError(f"invalid workflow name {name!r}: use letters, digits, _.-")
    if input_model is not None and not (
        isinstance(input_model, type) and issubclass(input_model, BaseModel)
    ):
        raise TypeError(f"input_model of workflow {name!r} must be a pydantic BaseModel subclass")

    def register(factory: F) -> F:
        doc = (inspect.getdoc(factory) or "").strip()
        entry = _Entry(
            name, factory, description or (doc.splitlines()[0] if doc else ""), input_model
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
    return RegisteredWorkflow(entry.name, entry.description, graph, entry.input_model)


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
