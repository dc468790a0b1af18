"""The loaded workflows and their public descriptions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.api.schemas import EdgePublic, GraphDetail, GraphSummary, NodePublic, RetryPublic
from service.errors import GraphNotFoundError
from service.runtime.registry import RegisteredWorkflow


def _retry_public(retry: Any) -> RetryPublic | None:
    if retry is None:
        return None
    retry_on = getattr(retry, "retry_on", ()) or ()
    if isinstance(retry_on, type):
        retry_on = (retry_on,)
    return RetryPublic(
        max_attempts=getattr(retry, "max_attempts", None),
        initial_delay=getattr(retry, "initial_delay", None),
        backoff=getattr(retry, "backoff", None),
        max_delay=getattr(retry, "max_delay", None),
        jitter=getattr(retry, "jitter", None),
        retry_on=[getattr(t, "__name__", str(t)) for t in retry_on],
    )


class Catalog:
    """Lookup of registered workflows by name."""

    def __init__(self, workflows: Mapping[str, RegisteredWorkflow]) -> None:
        self.workflows = dict(workflows)

    def get(self, name: str) -> RegisteredWorkflow:
        wf = self.workflows.get(name)
        if wf is None:
            raise GraphNotFoundError(name)
        return wf

    def summaries(self) -> list[GraphSummary]:
        return [
            GraphSummary(
                name=wf.name,
                description=wf.description,
                version=wf.version,
                node_count=len(wf.graph.nodes),
                has_input_schema=wf.input_model is not None,
            )
            for wf in sorted(self.workflows.values(), key=lambda w: w.name)
        ]

    def detail(self, name: str) -> GraphDetail:
        wf = self.get(name)
        graph = wf.graph
        nodes = [
            NodePublic(
                name=spec.name,
                destinations=list(spec.destinations) if spec.destinations is not None else None,
                retry=_retry_public(spec.retry),
                timeout=spec.timeout,
                is_async=bool(spec.is_async),
            )
            for spec in graph.nodes
        ]
        return GraphDetail(
            name=wf.name,
            description=wf.description,
            version=wf.version,
            on_version_change=wf.on_version_change,
            nodes=nodes,
            edges=[EdgePublic(source=s, target=t) for s, t in graph.edges],
            entry_point=graph.entry_point,
            reducers={k: str(v) for k, v in graph.reducers.items()},
            input_schema=wf.input_schema,
            mermaid=graph.to_mermaid(),
        )
