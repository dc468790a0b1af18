"""Which runs a list, a purge or a bulk cancel is about: ``RunFilter`` and its SQL condition.

Every condition is served by an index (migration 0004): ``graph`` and ``status`` by
``ix_runs_graph_created_at_id`` and ``ix_runs_status_created_at_id``, a tag by
``ix_run_tags_tag``, a metadata key and value by ``ix_run_metadata_values_key_value``, a
creation or end time by ``ix_runs_created_at_id`` and ``ix_runs_finished_at``.

Tags and metadata are searched through rows of their own (``search_rows``), written with the
run. A metadata value is searchable when its text (``metadata_text``) is at most
``MAX_SEARCHABLE_BYTES`` of UTF-8 and holds no NUL: a Postgres btree entry holds at most about
2.7 kB, and Postgres text cannot hold NUL. Longer values are kept on the run, not indexed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, false, select, true

from service.storage.records import RunStatus
from service.storage.tables import Run, RunMetadata, RunTag

__all__ = ["MAX_SEARCHABLE_BYTES", "RunFilter", "metadata_text", "searchable", "search_rows"]

MAX_SEARCHABLE_BYTES = 1024
"""The longest metadata value (as text, in UTF-8) that ``?metadata.<key>=`` can find."""


def metadata_text(value: Any) -> str:
    """A metadata value as ``run_metadata_values`` stores it and a query matches it: strings
    as they are, anything else as JSON (so ``?metadata.n=5`` finds ``{"n": 5}``)."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def searchable(text: str) -> bool:
    """Whether a metadata key or value text has a search row (see the module's docstring)."""
    return "\x00" not in text and len(text.encode("utf-8", "replace")) <= MAX_SEARCHABLE_BYTES


def search_rows(run: Mapping[str, Any]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The ``run_tags`` and ``run_metadata_values`` rows of a run, from its ``runs`` row values
    (``tables.new_run_values``): one per distinct tag, one per searchable metadata key."""
    run_id = run["id"]
    tags = [{"run_id": run_id, "tag": tag} for tag in dict.fromkeys(run.get("tags") or ())]
    metadata = []
    for key, value in (run.get("run_metadata") or {}).items():
        text = metadata_text(value)
        if searchable(key) and searchable(text):
            metadata.append({"run_id": run_id, "key": key, "value": text})
    return tags, metadata


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

    def search_run_ids(self) -> list[Select[str]]:
        """The ids of the runs with each tag, and with each metadata value, of the filter: one
        select each, over ``ix_run_tags_tag`` and ``ix_run_metadata_values_key_value``."""
        selects = [
            select(RunTag.run_id).where(RunTag.tag == tag) for tag in dict.fromkeys(self.tags)
        ]
        for key, value in self.metadata.items():
            selects.append(
                select(RunMetadata.run_id).where(RunMetadata.key == key, RunMetadata.value == value)
            )
        return selects

    def condition(self, *, driving: int | None = None) -> ColumnElement[bool]:
        """The ``WHERE`` condition on ``runs`` for this filter.

        Tags and metadata values are ``EXISTS`` probes of each run, except the one at index
        ``driving`` of ``search_run_ids()``, which is ``runs.id IN (...)``: SQLite, which does
        not weigh the two, then reads the runs it lists instead of probing the runs in order.
        """
        if not all(searchable(key) and searchable(value) for key, value in self.metadata.items()):
            return false()  # no search row holds such a key or value: no run matches
        parts: list[ColumnElement[bool]] = []
        if self.graph is not None:
            parts.append(Run.graph == self.graph)
        if self.statuses:
            parts.append(Run.status.in_(list(self.statuses)))
        for index, run_ids in enumerate(self.search_run_ids()):
            if index == driving:
                parts.append(Run.id.in_(run_ids))
            else:
                parts.append(exists(run_ids.where(run_ids.selected_columns[0] == Run.id)))
        if self.created_after is not None:
            parts.append(Run.created_at > self.created_after)
        if self.created_before is not None:
            parts.append(Run.created_at < self.created_before)
        if self.finished_before is not None:
            parts.append(Run.finished_at < self.finished_before)
        return and_(true(), *parts)
