"""Graphs only the dashboard tests register: HTML in node names and outputs, and a loop."""

from __future__ import annotations

import time
from typing import Any

from graphflow_core import Command, StateGraph
from service.runtime.registry import workflow

# Rendered as markup, these would add an image whose error handler sets window.__xss.
HTML_NODE = '<img src=x onerror="window.__xss=1">'
BOLD_NODE = "<b>bold</b>"
HTML_OUTPUT = '<script>window.__xss=2</script><img src=y onerror="window.__xss=3">'
LOOP_ROUNDS = 3


@workflow("html_names", description="<i>Node names</i> and outputs with HTML in them.")
def html_names() -> StateGraph:
    g = StateGraph()
    g.add_node(HTML_NODE, lambda state: {"note": HTML_OUTPUT})
    g.add_node(BOLD_NODE, lambda state: {"other": "<b>not bold</b>"})
    g.add_edge(HTML_NODE, BOLD_NODE).set_entry_point(HTML_NODE)
    return g


def _work(state: dict[str, Any]) -> dict[str, Any]:
    time.sleep(float(state.get("delay", 0.0)))
    return {"n": int(state.get("n", 0)) + 1}


def _check(state: dict[str, Any]) -> Command:
    return Command(goto="work" if state["n"] < LOOP_ROUNDS else [])


@workflow("loop", description="work -> check, which sends it back to work until n = 3.")
def loop() -> StateGraph:
    g = StateGraph()
    g.add_node("work", _work)
    g.add_node("check", _check, destinations=["work"])
    g.add_edge("work", "check").set_entry_point("work")
    return g
