"""Helpers shared by the built-in workflows: state typing, delays and seeded randomness."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from typing import Any

State = Mapping[str, Any]
"""The state a node receives (read-only by convention: nodes return deltas)."""


def simulate_work(seconds: float) -> None:
    """Sleep ``seconds`` (no-op for zero or negative values) to stand in for real work."""
    if seconds > 0:
        time.sleep(seconds)


def node_rng(state: State, node: str) -> random.Random:
    """Return a random generator for ``node``: reproducible when the state has a ``seed``.

    Each node gets its own stream (seeded by ``"<seed>:<node>"``), so results do not depend on
    the order in which parallel nodes run. Without a seed the generator is seeded from the OS.
    """
    seed = state.get("seed")
    return random.Random(None if seed is None else f"{seed}:{node}")
