"""Which runs a list, a purge or a bulk cancel is about: ``RunFilter`` and its SQL condition.

Every condition is served by an index (migration 0004): ``graph`` and ``status`` by
``ix_runs_graph_created_at_id`` and ``ix_runs_status_created_at_id``, a tag by
``ix_run_tags_tag``, a metadata key and value by ``ix_run_metadata_values_key_value``, a
creation or end time by ``ix_runs_created_at_id`` and ``ix_runs_finished_at``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, select, true

from service.storage.records import RunStatus
from service.storage.tables import Run, RunMetadata, RunTag

__all__ = ["RunFilter", "metadata_text"]


def metadata_text(value: Any) -> str:
    """A metadata value as ``run_metadata_values`` stores it and a query matches it: strings
    as they are, anything else as JSON (so ``?metadata.n=5`` finds ``{"n": 5}``)."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


@dataclass(frozen=True)
class RunFilter:
    """Runs that match every condition given (``None`` or empty: no condition)."""

    graph: str | None = None
    statuses: Sequence[RunStatus] = ()
    tags: Sequence[str] = ()  # a run must have all of them
    metadata: Mapping[str, str] = field(default_factory=dict)  # exact, on top-level keys
    created_after: datetime | None = None
    created_before: datetime | None = None
    finished_before: datetime | None = None

    def condition(self) -> ColumnElement[bool]:
        """The ``WHERE`` condition on ``runs`` for this filter."""
        parts: list[ColumnElement[bool]] = []
        if self.graph is not None:
            parts.append(Run.graph == self.graph)
        if self.statuses:
            parts.append(Run.status.in_(list(self.statuses)))
        for tag in dict.fromkeys(self.tags):
            parts.append(
                exists(select(RunTag.run_id).where(RunTag.run_id == Run.id, RunTag.tag == tag))
            )
        for key, value in self.metadata.items():
            parts.append(
                exists(
                    select(RunMetadata.run_id).where(
                        RunMetadata.run_id == Run.id,
                        RunMetadata.key == key,
                        RunMetadata.value == value,
                    )
                )
            )
        if self.created_after is not None:
            parts.append(Run.created_at > self.created_after)
        if self.created_before is not None:
            parts.append(Run.created_at < self.created_before)
        if self.finished_before is not None:
            parts.append(Run.finished_at < self.finished_before)
        return and_(true(), *parts)
