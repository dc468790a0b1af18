"""Render a compiled graph as a Mermaid flowchart."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from .graph import NodeSpec

_PLAIN_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED = {"end", "graph", "subgraph", "flowchart", "style", "click", "class"}


def render_mermaid(
    nodes: Iterable[NodeSpec], edges: Sequence[tuple[str, str]], entry_point: str
) -> str:
    """A ``flowchart TD``: solid arrows for edges, dashed ones for declared ``destinations``."""
    specs = list(nodes)
    ids = {spec.name: _node_id(index, spec.name) for index, spec in enumerate(specs)}
    lines = ["flowchart TD", "    __start__([start])"]
    for spec in specs:
        label = spec.name.replace('"', "#quot;")
        lines.append(f'    {ids[spec.name]}["{label}"]')
    lines.append(f"    __start__ --> {ids[entry_point]}")
    for source, target in edges:
        lines.append(f"    {ids[source]} --> {ids[target]}")
    for spec in specs:
        for target in spec.destinations or ():
            lines.append(f"    {ids[spec.name]} -.-> {ids[target]}")
    return "\n".join(lines) + "\n"


def _node_id(index: int, name: str) -> str:
    if _PLAIN_ID.match(name) and name.lower() not in _RESERVED:
        return name
    return f"node{index}"
