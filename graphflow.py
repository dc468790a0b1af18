"""The one import root for users: ``from graphflow import StateGraph, Command, Send, workflow``.

The engine's names come from ``graphflow_core``. ``workflow`` (the decorator that registers a
graph with the HTTP service) is imported on first use, so engine-only users never import the
service and its web stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from graphflow_core import *  # noqa: F403
from graphflow_core import __all__ as _engine_all

if TYPE_CHECKING:
    from service.runtime.registry import workflow as workflow

__all__ = sorted([*_engine_all, "workflow"])


def __getattr__(name: str) -> Any:
    if name == "workflow":
        from service.runtime.registry import workflow

        return workflow
    raise AttributeError(f"module 'graphflow' has no attribute {name!r}")
