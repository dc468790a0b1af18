"""Journal records: the small, durable trace of a completed node run, used to resume a run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .command import Send, Target

__all__ = ["NodeRecord"]


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """A completed node run: its activation id, node, update (a delta) and dynamic routes.

    A journal is a list of these. Passing it to ``invoke(..., journal=...)`` with the same
    input resumes an interrupted run: recorded node runs are not executed again.
    """

    run_id: str
    node: str
    update: dict[str, Any] | None
    goto: tuple[Target, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``Send`` routes become ``{"node": ..., "payload": ...}``."""
        return {
            "run_id": self.run_id,
            "node": self.node,
            "update": self.update,
            "goto": [
                t if isinstance(t, str) else {"node": t.node, "payload": t.payload}
                for t in self.goto
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeRecord:
        """Rebuild a record from ``to_dict()`` output.

        Raises:
            KeyError: a required field is missing.
        """
        goto = tuple(
            t if isinstance(t, str) else Send(t["node"], t.get("payload"))
            for t in data.get("goto") or ()
        )
        return cls(str(data["run_id"]), str(data["node"]), data.get("update"), goto)
