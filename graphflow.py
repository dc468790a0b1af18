"""The public name of GraphFlow's engine: ``from graphflow import StateGraph, Command``."""

from __future__ import annotations

from graphflow_core import *  # noqa: F403
from graphflow_core import __all__ as __all__
