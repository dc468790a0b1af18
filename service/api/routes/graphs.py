"""Registered graphs."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import CatalogDep
from service.api.schemas import ErrorPublic, GraphDetail, GraphSummary
from service.api.strict_route import STRICT_RESPONSES, StrictRoute

router = APIRouter(
    prefix="/graphs", tags=["graphs"], route_class=StrictRoute, responses=STRICT_RESPONSES
)


@router.get("", operation_id="list_graphs", response_model=list[GraphSummary])
async def list_graphs(catalog: CatalogDep) -> list[GraphSummary]:
    """List the registered graphs."""
    return catalog.summaries()


@router.get(
    "/{name}",
    operation_id="get_graph",
    response_model=GraphDetail,
    responses={404: {"model": ErrorPublic}},
)
async def get_graph(name: str, catalog: CatalogDep) -> GraphDetail:
    """Describe one graph: nodes, edges, reducers, input schema and a mermaid diagram."""
    return catalog.detail(name)
