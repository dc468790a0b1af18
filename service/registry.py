"""Alias of ``service.runtime.registry``: ``from service.registry import workflow`` still works."""

from __future__ import annotations

from service.runtime.registry import RegisteredWorkflow, WorkflowRegistryError, discover, workflow

__all__ = ["RegisteredWorkflow", "WorkflowRegistryError", "discover", "workflow"]
